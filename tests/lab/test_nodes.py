"""Node state through pytest-testinfra, against each node of a running lab.

The backend (ha_ingress_lab.testinfra_backend) runs testinfra's commands inside the
node's network and mount namespaces, so files are checked at their real paths
as the daemons see them.
"""

from __future__ import annotations

import pytest

from ha_ingress_lab.testinfra_backend import node_host
from ha_ingress_proxy import render

from .conftest import MODES, load  # VRRP modes (lab conftest)

OWNED = {
    "/etc/ha-ingress-proxy/haproxy.cfg": 0o644,
    "/etc/ha-ingress-proxy/keepalived.conf": 0o644,
    "/etc/ha-ingress-proxy/haproxy.env": 0o644,
    "/etc/ha-ingress-proxy/keepalived.env": 0o644,
    "/usr/libexec/keepalived/ha-ingress-proxy-check-haproxy": 0o755,
    # keepalived runs it as root (notify_backup): enable_script_security wants it root-owned
    "/usr/libexec/keepalived/ha-ingress-proxy-backup-grace": 0o755,
    "/usr/lib/sysctl.d/60-ha-ingress-proxy.conf": 0o644,
    "/etc/rsyslog.d/49-ha-ingress-proxy.conf": 0o644,
    "/etc/logrotate.d/ha-ingress-proxy": 0o644,
}


@pytest.fixture(scope="module", params=MODES)
def running(request, lab_ready, tmp_path_factory):
    from ha_ingress_lab import netns_lab as L

    site = load(request.param)
    with L.Lab(site, tmp_path_factory.mktemp(request.param)) as lab:
        lab.wait_vips(lab.masters())
        yield lab
    assert not [ns for ns in L.netns_list() if ns.startswith(L.PREFIX + "-")]


def test_each_vip_on_exactly_one_node(running):
    hosts = {n.name: node_host(running, n.name) for n in running.site.nodes}
    for vip in running.site.vips:
        holders = [name for name, h in hosts.items() if vip.address in h.interface("lab0").addresses]
        assert len(holders) == 1, (vip.address, holders)
        assert holders == [running.masters()[vip.address]]


def test_haproxy_listens_on_every_service_port_of_every_vip(running):
    for n in running.site.nodes:
        host = node_host(running, n.name)
        for vip in running.site.vips:
            for svc in running.site.services:
                assert host.socket(f"tcp://{vip.address}:{svc.port}").is_listening, (n.name, vip.address, svc.port)
        assert host.socket(f"tcp://127.0.0.1:{running.site.stats.port}").is_listening  # stats on loopback by default
        assert host.socket("udp://127.0.0.1:514").is_listening  # rsyslog, loopback only
        assert not host.socket("udp://0.0.0.0:514").is_listening


def test_config_files_have_intended_owner_and_mode(running):
    for n in running.site.nodes:
        host = node_host(running, n.name)
        tree = render.render_node(running.site, n.name)
        for path, mode in OWNED.items():
            f = host.file(path)
            assert f.exists and f.is_file, path
            assert (f.user, f.group, f.mode) == ("root", "root", mode), path
            assert f.content == tree[path.lstrip("/")].content  # the rendered bytes, unedited
        # the distro's own files are still there, untouched by the overlay
        assert host.file("/etc/haproxy/haproxy.cfg").exists


def test_sysctls_applied_in_the_node_namespace(running):
    for n in running.site.nodes:
        host = node_host(running, n.name)
        assert host.sysctl("net.ipv4.ip_nonlocal_bind") == 1
        assert host.sysctl("net.ipv4.tcp_tw_reuse") == 1
        assert host.sysctl("net.core.somaxconn") == 16384
        assert host.sysctl("net.ipv4.tcp_fin_timeout") == 30


def test_daemons_run_with_our_files(running):
    for n in running.site.nodes:
        host = node_host(running, n.name)
        pid = host.file("/run/haproxy.pid").content_string.split()[0]
        assert host.file(f"/proc/{pid}/comm").content_string.strip() == "haproxy"
        assert host.run("/usr/libexec/keepalived/ha-ingress-proxy-check-haproxy").rc == 0
        procs = host.process.filter(comm="keepalived")
        assert procs and all("--use-file=/etc/ha-ingress-proxy/keepalived.conf" in p.args for p in procs)


def test_vrrp_process_runs_at_the_planned_nice_value(running):
    """vrrp.nice: keepalived's VRRP process runs at the planned nice value (its adverts must leave on time on a
    busy CPU), and ordinary scheduling, not real-time (keepalived 2.2 kills a real-time VRRP child on reload)."""
    want = running.site.vrrp.nice
    assert want == -20, "the example inventories keep the default"
    for n in running.site.nodes:
        seen = set()
        for pid in running.daemon_pids(n.name, "keepalived"):
            try:
                comm = open(f"/proc/{pid}/comm").read().strip()
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except FileNotFoundError:  # a check script that ended meanwhile
                continue
            if comm == "keepalived":
                seen.add((int(fields[16]), int(fields[38])))  # (nice, policy): stat fields 19 and 41
        assert (want, 0) in seen, f"{n.name}: no keepalived process at nice {want} with SCHED_OTHER: {seen}"
