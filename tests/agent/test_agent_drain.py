"""`drain` / `resume` on a --root tree: the drain file, what status shows, refusals, a reboot.

haproxy's stats socket is a stand-in here (a unix socket answering `show stat`,
`show sess` and `set server` like haproxy 2.6 does), and so are the other
nodes' health answers (peer_check): neither the peers nor a haproxy at this
root exist in a unit test. The move itself (keepalived giving the VIP up, the
grace route, the real haproxy flag) is exercised with the real daemons in
tests/lab/test_drain.py.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading

import pytest

from ha_ingress_proxy import cli
from ha_ingress_proxy.agent import drain, haproxy_api, status
from ha_ingress_proxy.errors import UserError


STAT_HEAD = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n"


class FakeHaproxy:
    """Answers like haproxy's runtime API for the commands drain and status send; records them."""

    def __init__(self, path):
        self.flag = False
        self.streams = [
            "0x55d0c1a2b400: proto=tcpv4 src=192.168.1.254:40000 fe=https be=https srv=k8s-1 ts=00 epoch=0 age=7s calls=4 rate=0 cpu=0 lat=0 rq[f=8c8000h]",
            "0x55d0c1a2c800: proto=unix_stream src=unix:1 fe=GLOBAL be=<NONE> srv=<none> ts=00 epoch=0 age=0s calls=1 rate=1 cpu=0 lat=0 rq[f=c48200h]",
        ]
        self.asked: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _answer(self, line: str) -> str:
        if line == "show stat":
            status_ = "UP" if self.flag else "MAINT"
            return (STAT_HEAD + "http,FRONTEND,,,0,3,20000,9,0,0,0,0,0,,,,,OPEN,\n"
                    "http,k8s-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1\n"
                    f"https,FRONTEND,,,{len(self.https_streams())},1,20000,1,0,0,0,0,0,,,,,OPEN,\n"
                    "https,k8s-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1\n"
                    f"hip_drain,on,0,0,0,0,,0,0,0,,0,,0,0,0,0,{status_},1\n\n")
        if line == "show sess":
            return "\n".join(self.streams) + "\n\n"
        if line.startswith("set server hip_drain/on state "):
            self.flag = line.endswith("ready")
            return "\n"
        return "Unknown command.\n"

    def https_streams(self):
        return [s for s in self.streams if "fe=https" in s]

    def _serve(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn:
                line = conn.recv(1024).decode().strip()
                self.asked.append(line)
                conn.sendall(self._answer(line).encode())

    def close(self):
        self.srv.close()


@pytest.fixture
def haproxy(node_root):
    fake = FakeHaproxy(node_root.file("var/lib/haproxy/stats"))
    # the same haproxy answers on its read-only status socket (`level user`, what status reads)
    node_root.file("var/lib/haproxy/ha-ingress-proxy-status").symlink_to("stats")
    yield fake
    fake.close()


def _ip(tmp_path, *addrs):
    path = tmp_path / "ip.json"
    path.write_text(json.dumps([{"ifname": "ens192", "addr_info": [{"family": "inet", "local": a, "prefixlen": 24} for a in addrs]}]))
    return path


def _applied(node_root, tmp_path, node="proxy-2", *addrs):
    node_root.instance_data({"ha_ingress_node": node})  # the password: secrets.env, as NodeRoot lays it out
    ip = _ip(tmp_path, *addrs)
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)]) == 0
    node_root.file("run/keepalived.pid").write_text("4242\n")
    node_root.file("proc/4242").mkdir(parents=True, exist_ok=True)
    node_root.file("proc/4242/comm").write_text("keepalived\n")
    # haproxy runs too (else status says FAULT: keepalived's haproxy check fails)
    node_root.file("run/haproxy.pid").write_text("4343\n")
    node_root.file("proc/4343").mkdir(parents=True, exist_ok=True)
    node_root.file("proc/4343/comm").write_text("haproxy\n")
    return ip


def test_drain_of_a_node_holding_no_vip_writes_the_track_file_and_status_shows_it(node_root, haproxy, tmp_path, capsys):
    ip = _applied(node_root, tmp_path, "proxy-2", "192.168.1.11")
    capsys.readouterr()
    assert cli.main(["drain", "--root", str(node_root.path), "--ip-addr-json", str(ip), "--wait", "0"]) == 0
    out = capsys.readouterr().out
    assert "drained: this node held no VIP; every VRRP instance in FAULT" in out
    # what keepalived's track_file reads: a non-zero number (weight 0: FAULT)
    assert node_root.file("var/lib/ha-ingress-proxy/drain").read_text() == "1\n"
    assert haproxy.flag is True and "set server hip_drain/on state ready" in haproxy.asked
    assert cli.main(["status", "--root", str(node_root.path), "--ip-addr-json", str(ip)]) == 0
    human = capsys.readouterr().out
    assert "drain     DRAINED since " in human
    assert "/var/lib/ha-ingress-proxy/drain: every VRRP instance in FAULT; kept across reboot" in human
    assert "vrrp      192.168.1.10: FAULT (not held here; this node is a backup for it)" in human
    assert "haproxy   drain flag set: every HTTP response says Connection: close" in human
    assert cli.main(["status", "--json", "--root", str(node_root.path), "--ip-addr-json", str(ip)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["drain"]["drained"] is True and report["drain"]["info"]["node"] == "proxy-2"
    assert report["vrrp"] == {"192.168.1.10": "FAULT", "192.168.1.12": "FAULT"}
    assert report["haproxy"]["drain_flag"] is True
    assert "hip_drain" not in report["backends"]  # the flag is not a backend


def test_drain_twice_says_already_and_resume_undoes_it(node_root, haproxy, tmp_path, capsys):
    ip = _applied(node_root, tmp_path, "proxy-2", "192.168.1.11")
    root = str(node_root.path)
    assert cli.main(["drain", "--root", root, "--ip-addr-json", str(ip), "--wait", "0"]) == 0
    capsys.readouterr()
    assert cli.main(["drain", "--root", root, "--ip-addr-json", str(ip)]) == 0
    assert capsys.readouterr().out.startswith("already drained since ")
    assert cli.main(["resume", "--root", root]) == 0
    # the active-active example preempts
    assert "resumed: keepalived leaves FAULT; with preempt this node takes back the VIPs it masters" in capsys.readouterr().out
    assert node_root.file("var/lib/ha-ingress-proxy/drain").read_text() == "0\n"
    assert not node_root.file("var/lib/ha-ingress-proxy/drain.json").exists()
    assert haproxy.flag is False
    report = status.collect(node_root.path, ip_json=ip)
    assert report["drain"] == {"drained": False, "file": "/var/lib/ha-ingress-proxy/drain"}
    assert report["vrrp"] == {"192.168.1.10": "BACKUP", "192.168.1.12": "BACKUP"}
    assert cli.main(["resume", "--root", root]) == 0
    assert "not drained; nothing to resume" in capsys.readouterr().out


def test_drained_state_survives_a_reboot(node_root, haproxy, tmp_path):
    ip = _applied(node_root, tmp_path, "proxy-2", "192.168.1.11")
    drain.drain(node_root.path, wait=0, ip_json=ip)
    # a reboot: /run is a fresh tmpfs, apply runs again at boot; /var/lib is kept
    shutil.rmtree(node_root.file("run"))
    _applied(node_root, tmp_path, "proxy-2", "192.168.1.11")
    report = status.collect(node_root.path, ip_json=ip)
    assert report["drain"]["drained"] is True
    assert drain.read_flag(node_root.path) == 1


def test_drain_refused_when_no_other_node_is_healthy(node_root, haproxy, tmp_path):
    ip = _applied(node_root, tmp_path, "proxy-1", "192.168.1.9", "192.168.1.10")
    asked = []

    def peer_down(site, node):
        asked.append(node.name)
        return False

    with pytest.raises(UserError) as exc:
        drain.drain(node_root.path, wait=0, ip_json=ip, peer_check=peer_down)
    assert exc.value.lines == [
        "drain refused: this node holds 192.168.1.10 and no other node's haproxy answers "
        "(proxy-2 192.168.1.11:8888); --force drains anyway (the VIP then has no node)"]
    assert asked == ["proxy-2"]
    assert not node_root.file("var/lib/ha-ingress-proxy/drain").exists()
    assert haproxy.flag is False  # refused before anything changed


def test_drain_refused_before_apply(node_root, tmp_path, capsys):
    assert cli.main(["drain", "--root", str(node_root.path), "--ip-addr-json", str(_ip(tmp_path))]) == 1
    assert capsys.readouterr().err.strip() == (
        "ha-ingress-proxy: /run/ha-ingress-proxy/state.json: not readable: `ha-ingress-proxy apply` has not run since boot")
    assert not node_root.file("var/lib/ha-ingress-proxy/drain").exists()


def test_negative_wait_is_refused(node_root, tmp_path, capsys):
    assert cli.main(["drain", "--root", str(node_root.path), "--wait", "-1"]) == 1
    assert capsys.readouterr().err.strip() == "ha-ingress-proxy: --wait: -1 is negative"


@pytest.mark.parametrize("text, value", [("1\n", 1), ("0\n", 0), ("", 0), ("garbage", 0), ("2 # note", 2)])
def test_drain_file_is_read_as_keepalived_reads_it(node_root, text, value):
    path = node_root.file("var/lib/ha-ingress-proxy/drain")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert drain.read_flag(node_root.path) == value


def test_show_sess_parsing_keeps_only_service_streams():
    line = "0x5611: proto=tcpv4 src=10.0.0.1:1234 fe=https be=https srv=k8s-1 ts=00 epoch=0 age=1m20s calls=4 rate=0"
    m = haproxy_api._SESS.match(line)
    assert m and haproxy_api._age(m.group(4)) == 80
    assert haproxy_api._age("1d2h") == 93600 and haproxy_api._age("<NEVER>") == 0
