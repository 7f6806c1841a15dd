"""Hitless reloads on a running lab: `ha-ingress-proxy reload` inside the node, real haproxy and keepalived.

A reload validates the config (haproxy -c), saves the servers' runtime state
and sends SIGUSR2 to haproxy's master; the new worker takes the listeners over
(expose-fd listeners) and the old one keeps its connections. keepalived's
SIGHUP keeps every instance's state. Asserted: no probe request fails, the
held keep-alive connection and TLS stream are never reset, a server put in
maintenance stays so, and no VIP moves. Timings: `invoke bench --failover --scenario reload`.
"""

from __future__ import annotations

import time

from ha_ingress_proxy import layout
from ha_ingress_proxy.agent import haproxy_api

from .conftest import load

# Generous: this machine is shared and a starved client sees a whole-second stall now and
# then (every target fails at once, the VIPs that did not move too). What a drain or a
# reload could break is a reset (fails at once) or a moved VIP nobody answers for (fails
# every request from then on); the bench measures with the 0.3 s timeout.
TIMEOUT = 2.5


def test_haproxy_reloads_keep_connections_and_server_state_and_keepalived_sighup_keeps_the_vip(make_lab):
    site = load("active-passive")
    lab = make_lab(site)
    lab.wait_vips(lab.masters())
    for node in site.nodes:
        lab.agent(node.name, "apply")
    master = "proxy-1"
    sock = lab.node_path(master, layout.shown(layout.HAPROXY_SOCKET))
    assert haproxy_api.command(sock, "set server http/k8s-2 state maint").strip() == ""
    master_pid = lab.haproxy_pids(master)[0]
    before = lab.vip_holders()
    held = lab.hold(timeout=TIMEOUT)
    probe = lab.probe(timeout=TIMEOUT)
    time.sleep(1.0)
    outputs = []
    for _ in range(4):
        outputs.append(lab.agent(master, "reload", "--haproxy-only").stdout)
        time.sleep(1.0)
    outputs.append(lab.agent(master, "reload", "--keepalived-only").stdout)
    time.sleep(1.5)
    results = probe.stop()
    conns = held.stop()

    assert all("haproxy reloaded (validated; " in out and "SIGUSR2 to master" in out for out in outputs[:4])
    assert "keepalived reloaded (SIGHUP" in outputs[4]
    assert [r for r in results if not r[3]] == []
    assert conns["http"]["resets"] == 0 and conns["tcp"]["resets"] == 0
    assert conns["tcp"]["connections"] == 1  # the stream stayed on its (old) worker throughout
    assert conns["http"]["exchanges"] > 0 and conns["tcp"]["exchanges"] > 0
    assert lab.vip_holders() == before
    # the same master (a reload, not a restart); the saved state kept k8s-2 in maintenance
    assert lab.haproxy_pids(master)[0] == master_pid
    assert haproxy_api.servers(haproxy_api.stat_rows(sock))["http"]["k8s-2"] == "MAINT"
    saved = lab.node_path(master, layout.shown(layout.SERVER_STATE)).read_text()
    assert saved.startswith("1\n") and " k8s-2 " in saved


def test_reload_refuses_a_config_haproxy_rejects(make_lab):
    """The validation is haproxy's own: a config it rejects is never reloaded."""
    site = load("active-passive")
    lab = make_lab(site)
    lab.wait_vips(lab.masters())
    lab.agent("proxy-1", "apply")
    # The node's /etc is a read-only view of the rendered tree; breaking the rendered file on
    # the host side breaks what the node sees (a stand-in for a hand-edited config).
    cfg = lab.members["proxy-1"].tree / layout.HAPROXY_CFG
    cfg.write_text(cfg.read_text() + "\nthis is not haproxy\n")
    pids = lab.haproxy_pids("proxy-1")
    proc = lab.agent("proxy-1", "reload", "--haproxy-only", check=False)
    assert proc.returncode == 1
    assert "/etc/ha-ingress-proxy/haproxy.cfg: haproxy -c refused it; haproxy not reloaded" in proc.stdout
    assert lab.haproxy_pids("proxy-1") == pids
