"""`status`: human and JSON, for a master, a backup and a refused node; haproxy's stats socket faked."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from ha_ingress_proxy import cli
from ha_ingress_proxy.agent import status


SHOW_STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n"
    "http,FRONTEND,,,0,0,20000,0,0,0,0,0,0,,,,,OPEN,\n"
    "http,k8s-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1\n"
    "http,k8s-2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1\n"
    "http,BACKEND,0,0,0,0,2000,0,0,0,0,0,,0,0,0,0,UP,1\n"
    "https,FRONTEND,,,0,0,20000,0,0,0,0,0,0,,,,,OPEN,\n"
    "https,k8s-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1\n"
    "https,k8s-2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1\n"
    "https,BACKEND,0,0,0,0,2000,0,0,0,0,0,,0,0,0,0,UP,1\n"
    "stats,FRONTEND,,,0,0,20000,0,0,0,0,0,0,,,,,OPEN,\n"
    "\n"
)


@pytest.fixture
def haproxy_socket(node_root):
    """A stand-in for haproxy's read-only status socket (`level user`) answering `show stat`."""
    path = node_root.file("var/lib/haproxy/ha-ingress-proxy-status")
    path.parent.mkdir(parents=True)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    srv.settimeout(10)
    asked = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                asked.append(conn.recv(1024))
                conn.sendall(SHOW_STAT.encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield asked
    srv.close()


def _ip(tmp_path, *addrs):
    path = tmp_path / "ip.json"
    path.write_text(json.dumps([{"ifname": "ens192", "addr_info": [{"family": "inet", "local": a, "prefixlen": 24} for a in addrs]}]))
    return str(path)


def _keepalived_running(node_root):
    """A pid file naming a live 'keepalived' as seen through <root>/proc."""
    node_root.file("run/keepalived.pid").write_text("4242\n")
    (node_root.file("proc/4242")).mkdir(parents=True)
    node_root.file("proc/4242/comm").write_text("keepalived\n")


def _haproxy_running(node_root):
    """haproxy's pid file naming a live 'haproxy' as seen through <root>/proc."""
    node_root.file("run/haproxy.pid").write_text("4343\n")
    (node_root.file("proc/4343")).mkdir(parents=True)
    node_root.file("proc/4343/comm").write_text("haproxy\n")


def test_status_master_holding_its_vip(node_root, haproxy_socket, tmp_path, capsys):
    node_root.instance_data({"ha_ingress_role": "master"})
    ip = _ip(tmp_path, "192.168.1.9", "192.168.1.10")
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", ip]) == 0
    _keepalived_running(node_root)
    _haproxy_running(node_root)
    node_root.file("run/ha-ingress-proxy/haproxy-down").write_text("0\n")  # what watch-haproxy writes
    capsys.readouterr()
    assert cli.main(["status", "--root", str(node_root.path), "--ip-addr-json", ip]) == 0
    human = capsys.readouterr().out
    assert human.splitlines() == [
        "state     APPLIED: node proxy-1 (master) of site dc1-ingress (active-active)",
        "source    cloud-init metadata (nocloud): /run/cloud-init/instance-data.json: ds.meta_data.ha_ingress_role",
        "address   192.168.1.9 on ens192 is proxy-1's address",
        "vips      192.168.1.10, 192.168.1.12 (from site model)",
        "keepalived running, pid 4242",
        "haproxy   running, pid 4343",
        "watch     /run/ha-ingress-proxy/haproxy-down says 0: haproxy serving (keepalived's track_file)",
        "drain     no (serving)",
        "vrrp      192.168.1.10: MASTER (held here; this node masters it when all nodes are healthy)",
        "vrrp      192.168.1.12: BACKUP (not held here; this node is a backup for it)",
        "backends  http: k8s-1 UP, k8s-2 DOWN",
        "backends  https: k8s-1 UP, k8s-2 UP",
        "stats     plain http on 127.0.0.1:8888",
    ]
    assert haproxy_socket == [b"show stat\n"]
    assert cli.main(["status", "--json", "--root", str(node_root.path), "--ip-addr-json", ip]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["held"] == ["192.168.1.10"]
    assert report["vrrp"] == {"192.168.1.10": "MASTER", "192.168.1.12": "BACKUP"}
    assert report["backends"]["http"] == {"k8s-1": "UP", "k8s-2": "DOWN"}
    assert (report["node"], report["role"], report["ok"]) == ("proxy-1", "master", True)
    # haproxy dies: keepalived's unweighted check puts the instance it does not hold in FAULT
    node_root.file("proc/4343/comm").write_text("bash\n")
    report = status.collect(node_root.path, ip_json=ip)
    assert report["vrrp"] == {"192.168.1.10": "MASTER", "192.168.1.12": "FAULT"}
    assert report["haproxy_process"] == {"running": False, "pid": None}


def test_status_backup_after_failover_and_without_keepalived(passive_root, tmp_path, capsys):
    passive_root.instance_data({"ha_ingress_node": "proxy-2"})
    ip = _ip(tmp_path, "192.168.1.11")
    assert cli.main(["apply", "--root", str(passive_root.path), "--ip-addr-json", ip]) == 0
    capsys.readouterr()
    assert cli.main(["status", "--root", str(passive_root.path), "--ip-addr-json", ip]) == 0
    out = capsys.readouterr().out
    assert "state     APPLIED: node proxy-2 (backup) of site dc1-ingress (active-passive)" in out
    assert "keepalived not running" in out
    assert "haproxy   not running" in out
    assert "vrrp      192.168.1.10: STOPPED (not held here; this node is a backup for it)" in out
    assert "haproxy   stats socket unreachable: /var/lib/haproxy/ha-ingress-proxy-status: No such file or directory" in out
    # the backup took the VIP over: status says so from the addresses alone
    ip2 = _ip(tmp_path, "192.168.1.11", "192.168.1.10")
    report = status.collect(passive_root.path, ip_json=ip2)
    # ... but only while keepalived runs: a VIP left on the interface by a dead keepalived is not MASTER
    assert report["vrrp"] == {"192.168.1.10": "STOPPED"} and report["held"] == ["192.168.1.10"]
    _keepalived_running(passive_root)
    report = status.collect(passive_root.path, ip_json=ip2)
    assert report["vrrp"] == {"192.168.1.10": "MASTER"} and report["masters"] == []


def test_status_refused_exits_1_with_the_reason(node_root, tmp_path, capsys):
    node_root.instance_data({"ha_ingress_node": "proxy-9"})
    ip = _ip(tmp_path)
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", ip]) == 1
    capsys.readouterr()
    assert cli.main(["status", "--root", str(node_root.path), "--ip-addr-json", ip]) == 1
    reason = "/run/cloud-init/instance-data.json: ds.meta_data.ha_ingress_node: 'proxy-9' is not a node of site dc1-ingress (nodes: proxy-1, proxy-2)"
    assert capsys.readouterr().out.splitlines() == [
        f"state     REFUSED: {reason}",
        "vips      none claimed (keepalived.conf removed; keepalived does not start)",
    ]
    assert cli.main(["status", "--json", "--root", str(node_root.path), "--ip-addr-json", ip]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["result"], report["reason"]) == (False, "refused", reason)


def test_status_before_any_apply(node_root, tmp_path, capsys):
    assert cli.main(["status", "--root", str(node_root.path), "--ip-addr-json", _ip(tmp_path)]) == 1
    assert "NOT APPLIED: no readable /run/ha-ingress-proxy/state.json" in capsys.readouterr().out


def test_keepalived_pid_must_be_keepalived(node_root):
    node_root.file("run").mkdir(exist_ok=True)
    node_root.file("run/keepalived.pid").write_text(f"{os.getpid()}\n")
    assert status.keepalived_pid(node_root.path) is None  # no <root>/proc/<pid>/comm saying keepalived


@pytest.mark.parametrize("content, value, words", [(None, None, "absent: keepalived's 1 s check alone"),
                                                   ("1\n", 1, "says 1: haproxy's master is gone"),
                                                   ("", 0, "says 0: haproxy serving")])
def test_status_shows_the_haproxy_watch_file_as_keepalived_reads_it(node_root, haproxy_socket, tmp_path, capsys,
                                                                    content, value, words):
    """watch-haproxy's track_file: a 1 there holds every VRRP instance in FAULT, which an operator must see."""
    node_root.instance_data({"ha_ingress_role": "master"})
    ip = _ip(tmp_path, "192.168.1.9", "192.168.1.10")
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", ip]) == 0
    _keepalived_running(node_root)
    _haproxy_running(node_root)
    if content is not None:
        node_root.file("run/ha-ingress-proxy/haproxy-down").write_text(content)
    capsys.readouterr()
    cli.main(["status", "--json", "--root", str(node_root.path), "--ip-addr-json", ip])
    report = json.loads(capsys.readouterr().out)
    assert report["haproxy_watch"] == {"file": "/run/ha-ingress-proxy/haproxy-down", "value": value}
    cli.main(["status", "--root", str(node_root.path), "--ip-addr-json", ip])
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("watch ")]
    assert len(line) == 1 and words in line[0], line
