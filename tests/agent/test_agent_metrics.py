"""`ha-ingress-proxy metrics`: the exposition, checked by the real `promtool check metrics`, always agrees
with `status` (both read live.observe), and shows a killed keepalived down at the next scrape.

The process-liveness tests run real processes read through the real /proc (<root>/proc is a symlink to
it): a copy of /bin/sleep named `keepalived`/`haproxy` stands in for the daemons, because only the
process name and its life matter here; the lab tests (tests/lab/test_alerts.py) use the real daemons.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from ha_ingress_proxy import cli
from ha_ingress_proxy.agent import live, metrics, status



def _ip(tmp_path, *addrs):
    path = tmp_path / "ip.json"
    path.write_text(json.dumps([{"ifname": "ens192", "addr_info": [{"family": "inet", "local": a, "prefixlen": 24} for a in addrs]}]))
    return path


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@pytest.fixture
def real_proc(node_root, tmp_path):
    """<root>/proc is the real /proc (bind-mounted, undone after); start(name) runs a process whose comm is `name`."""
    proc_dir = node_root.path / "proc"
    subprocess.run(["mount", "--bind", "/proc", str(proc_dir)], check=True)
    (node_root.path / "run").mkdir(exist_ok=True)
    procs = []

    def start(name: str, pidfile: str) -> subprocess.Popen:
        exe = tmp_path / "bin" / name
        exe.parent.mkdir(exist_ok=True)
        shutil.copy("/bin/sleep", exe)
        proc = subprocess.Popen([str(exe), "600"])
        procs.append(proc)
        for _ in range(500):  # until the kernel shows the new program's name (exec may still be under way)
            try:
                if open(f"/proc/{proc.pid}/comm").read().strip() == name:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        node_root.file(pidfile).write_text(f"{proc.pid}\n")
        return proc

    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        subprocess.run(["umount", "-l", str(proc_dir)], check=False)


def test_master_scrape_is_valid_and_agrees_with_status(node_root, real_proc, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    node_root.instance_data({"ha_ingress_role": "master"})
    ip = _ip(tmp_path, "192.168.1.9", "192.168.1.10")
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)]) == 0
    real_proc("keepalived", "run/keepalived.pid")
    real_proc("haproxy", "run/haproxy.pid")
    text = metrics.scrape(node_root.path, ip_json=ip)
    check = subprocess.run([promtool, "check", "metrics"], input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    s = _samples(text)
    vip10 = 'site="dc1-ingress",vip="192.168.1.10",vrrp_instance="VI_51"'
    vip12 = 'site="dc1-ingress",vip="192.168.1.12",vrrp_instance="VI_61"'
    assert s["ha_ingress_agent_applied"] == 1
    assert s['ha_ingress_agent_info{site="dc1-ingress",node="proxy-1",role="master",source="cloud-init metadata (nocloud)",'
             'mode="active-active",result="applied"}'] == 1
    assert (s["ha_ingress_keepalived_up"], s["ha_ingress_haproxy_up"]) == (1, 1)
    assert (s[f"ha_ingress_vip_held{{{vip10}}}"], s[f"ha_ingress_vip_held{{{vip12}}}"]) == (1, 0)
    assert s[f'ha_ingress_vrrp_state{{{vip10},state="master"}}'] == 1
    assert s[f'ha_ingress_vrrp_state{{{vip12},state="backup"}}'] == 1
    assert sum(v for k, v in s.items() if k.startswith("ha_ingress_vrrp_state")) == 2  # one state per VIP
    assert s[f"ha_ingress_vip_planned_master{{{vip10}}}"] == 1
    report = status.collect(node_root.path, ip_json=ip)
    assert report["vrrp"] == {"192.168.1.10": "MASTER", "192.168.1.12": "BACKUP"}


def _vrrp_from_scrape(text: str) -> dict[str, str]:
    out = {}
    for key, value in _samples(text).items():
        if key.startswith("ha_ingress_vrrp_state{") and value == 1:
            labels = dict(part.split("=", 1) for part in key[len("ha_ingress_vrrp_state{"):-1].split(","))
            out[labels["vip"].strip('"')] = labels["state"].strip('"')
    return out


def test_killed_keepalived_is_down_at_the_next_scrape_also_as_a_zombie(node_root, real_proc, tmp_path):
    node_root.instance_data({"ha_ingress_role": "master"})
    ip = _ip(tmp_path, "192.168.1.9", "192.168.1.10")
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)]) == 0
    ka = real_proc("keepalived", "run/keepalived.pid")
    hp = real_proc("haproxy", "run/haproxy.pid")
    assert _samples(metrics.scrape(node_root.path, ip_json=ip))["ha_ingress_keepalived_up"] == 1
    ka.send_signal(signal.SIGKILL)
    # not reaped yet: a zombie keeps /proc/<pid>/comm; it must still read as down
    for _ in range(100):
        if live.live_pid(node_root.path, "run/keepalived.pid", "keepalived") is None:
            break
        time.sleep(0.01)
    text = metrics.scrape(node_root.path, ip_json=ip)
    s = _samples(text)
    assert s["ha_ingress_keepalived_up"] == 0
    # the VIP is still on the interface (nobody removed it): held says so, but the state is down, never master
    assert s['ha_ingress_vip_held{site="dc1-ingress",vip="192.168.1.10",vrrp_instance="VI_51"}'] == 1
    assert _vrrp_from_scrape(text) == {"192.168.1.10": "down", "192.168.1.12": "down"}
    assert status.collect(node_root.path, ip_json=ip)["vrrp"] == {"192.168.1.10": "STOPPED", "192.168.1.12": "STOPPED"}
    ka.wait()
    # keepalived restarted with a new pid, haproxy dies: backup instance goes FAULT
    real_proc("keepalived", "run/keepalived.pid")
    hp.kill()
    hp.wait()
    text = metrics.scrape(node_root.path, ip_json=ip)
    assert _samples(text)["ha_ingress_haproxy_up"] == 0
    assert _vrrp_from_scrape(text) == {"192.168.1.10": "master", "192.168.1.12": "fault"}


@pytest.mark.parametrize("held, ka, hp", [((), True, True), (("192.168.1.10",), True, False), (("192.168.1.12",), False, True),
                                           (("192.168.1.10", "192.168.1.12"), True, True), ((), False, False)])
def test_status_and_scrape_never_disagree(node_root, tmp_path, held, ka, hp):
    node_root.instance_data({"ha_ingress_role": "backup"})
    ip = _ip(tmp_path, "192.168.1.11", *held)
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)]) == 0
    for name, pid, on in (("keepalived", 4242, ka), ("haproxy", 4343, hp)):
        node_root.file(f"run/{name}.pid").write_text(f"{pid}\n")
        node_root.file(f"proc/{pid}").mkdir(parents=True, exist_ok=True)
        node_root.file(f"proc/{pid}/comm").write_text((name if on else "sh") + "\n")
    scraped = _vrrp_from_scrape(metrics.scrape(node_root.path, ip_json=ip))
    shown = status.collect(node_root.path, ip_json=ip)["vrrp"]
    assert {vip: status.SHOWN[st] for vip, st in scraped.items()} == shown
    assert len(shown) == 2


def test_unreadable_addresses_omit_vip_series_instead_of_guessing(node_root, tmp_path):
    node_root.instance_data({"ha_ingress_role": "master"})
    ip = _ip(tmp_path, "192.168.1.9")
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)]) == 0
    node_root.file("run/keepalived.pid").write_text("4242\n")
    node_root.file("proc/4242").mkdir(parents=True)
    node_root.file("proc/4242/comm").write_text("keepalived\n")
    s = _samples(metrics.scrape(node_root.path, ip_json=tmp_path / "missing.json"))
    assert s['ha_ingress_observe_error{what="addresses"}'] == 1
    assert not any(k.startswith(("ha_ingress_vip_held", "ha_ingress_vrrp_state")) for k in s)


def test_not_applied_scrape_and_http_server(node_root, tmp_path):
    server = metrics.make_server("127.0.0.1:0", node_root.path, ip_json=_ip(tmp_path))
    import threading

    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            s = _samples(resp.read().decode())
        assert s["ha_ingress_agent_applied"] == 0
        assert s['ha_ingress_observe_error{what="state_file"}'] == 1
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/secrets", timeout=5)
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_listen_must_be_address_and_port():
    from ha_ingress_proxy.errors import UserError

    for bad in ("9165", "127.0.0.1:", "127.0.0.1:99999", ":80"):
        with pytest.raises(UserError):
            metrics.parse_listen(bad)
    assert metrics.parse_listen("[::1]:9165") == ("::1", 9165)


def test_listen_node_means_the_address_the_agent_found(node_root, tmp_path):
    from ha_ingress_proxy.errors import UserError

    with pytest.raises(UserError, match="the agent has not applied a role"):
        metrics.resolve_host("node", node_root.path)
    node_root.instance_data({"ha_ingress_role": "backup"})
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", str(_ip(tmp_path, "192.168.1.11"))]) == 0
    assert metrics.resolve_host("node", node_root.path) == "192.168.1.11"
    assert metrics.resolve_host("127.0.0.1", node_root.path) == "127.0.0.1"


def _backup_with_daemons(node_root, tmp_path):
    """proxy-2 applied as backup, keepalived and haproxy alive as seen through <root>/proc; its ip.json."""
    node_root.instance_data({"ha_ingress_role": "backup"})
    ip = _ip(tmp_path, "192.168.1.11")
    assert cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)]) == 0
    for name, pid in (("keepalived", 4242), ("haproxy", 4343)):
        node_root.file(f"run/{name}.pid").write_text(f"{pid}\n")
        node_root.file(f"proc/{pid}").mkdir(parents=True, exist_ok=True)
        node_root.file(f"proc/{pid}/comm").write_text(name + "\n")
    return ip


def test_drained_node_shows_drained_and_fault_in_both(node_root, tmp_path):
    ip = _backup_with_daemons(node_root, tmp_path)
    assert _samples(metrics.scrape(node_root.path, ip_json=ip))["ha_ingress_drained"] == 0
    node_root.file("var/lib/ha-ingress-proxy").mkdir(parents=True, exist_ok=True)
    node_root.file("var/lib/ha-ingress-proxy/drain").write_text("1\n")  # what `drain` writes (keepalived's track file)
    text = metrics.scrape(node_root.path, ip_json=ip)
    assert _samples(text)["ha_ingress_drained"] == 1
    assert _vrrp_from_scrape(text) == {"192.168.1.10": "fault", "192.168.1.12": "fault"}
    report = status.collect(node_root.path, ip_json=ip)
    assert report["drain"]["drained"] is True and report["vrrp"] == {"192.168.1.10": "FAULT", "192.168.1.12": "FAULT"}


def test_haproxy_down_file_shows_as_tracked_and_fault(node_root, tmp_path):
    """watch-haproxy's track_file says 1 (haproxy's master restarted, its worker not yet forked): keepalived
    holds every instance in FAULT, and the scrape and status say so although a haproxy master runs."""
    ip = _backup_with_daemons(node_root, tmp_path)
    assert _samples(metrics.scrape(node_root.path, ip_json=ip))["ha_ingress_haproxy_down_tracked"] == 0  # absent
    node_root.file("run/ha-ingress-proxy/haproxy-down").write_text("1\n")
    text = metrics.scrape(node_root.path, ip_json=ip)
    assert _samples(text)["ha_ingress_haproxy_down_tracked"] == 1
    assert _vrrp_from_scrape(text) == {"192.168.1.10": "fault", "192.168.1.12": "fault"}
    report = status.collect(node_root.path, ip_json=ip)
    assert report["haproxy_watch"]["value"] == 1 and report["vrrp"] == {"192.168.1.10": "FAULT", "192.168.1.12": "FAULT"}


def test_metrics_over_tls_with_the_stats_certificate(node_root, tmp_path):
    """metrics on `node` with metrics.tls: the exporter serves the stats page's certificate (here made
    self-signed by the agent's own code, real openssl); a TLS client gets /metrics, plain HTTP gets nothing."""
    import socket
    import ssl
    import threading

    from ha_ingress_proxy import layout
    from ha_ingress_proxy.agent import stats_cert

    stats_cert.make_self_signed(node_root.path, layout.STATS_CERT, "proxy-1 test", "127.0.0.1")
    server = metrics.make_server("127.0.0.1:0", node_root.path, ip_json=_ip(tmp_path),
                                 tls_cert=layout.shown(layout.STATS_CERT))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        ctx = ssl.create_default_context(cafile=str(node_root.path / layout.STATS_CERT))
        ctx.check_hostname = False
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", timeout=10, context=ctx) as resp:
            assert "ha_ingress_agent_applied 0" in resp.read().decode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert b"ha_ingress" not in plain.recv(65536)
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_tls_certificate_is_one_line(node_root, tmp_path):
    from ha_ingress_proxy.errors import UserError

    with pytest.raises(UserError) as exc:
        metrics.make_server("127.0.0.1:0", node_root.path, ip_json=_ip(tmp_path), tls_cert="/etc/ha-ingress-proxy/none.pem")
    assert len(exc.value.lines) == 1 and exc.value.lines[0].startswith("metrics: --tls-cert /etc/ha-ingress-proxy/none.pem: cannot load it")
