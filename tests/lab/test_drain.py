"""`ha-ingress-proxy drain` / `resume` on a running lab: real keepalived, haproxy and agent.

The agent runs inside the node (its network and mount namespaces, --root /),
as on a real node. Timings are for `invoke bench --failover --scenario drain`;
here the probe has the tests' generous timeout (1 s) and the assertions are
about behaviour: where the VIP is, what status says, which connections broke.
"""

from __future__ import annotations

import json
import time

from ha_ingress_lab import netns_lab

# Generous: this machine is shared and a starved client sees a whole-second stall now and
# then (every target fails at once, the VIPs that did not move too). What a drain or a
# reload could break is a reset (fails at once) or a moved VIP nobody answers for (fails
# every request from then on); the bench measures with the 0.3 s timeout.
TIMEOUT = 2.5


def _applied(lab) -> None:
    for node in lab.site.nodes:
        lab.agent(node.name, "apply")


def _status(lab, name: str) -> dict:
    return json.loads(lab.agent(name, "status", "--json").stdout)


def test_drain_moves_the_vip_closes_keepalive_cleanly_and_resume_undoes_it(site, make_lab):
    lab = make_lab(site, backend="python")  # its plain TCP echo stream is the held connection these asserts count
    lab.wait_vips(lab.masters())
    _applied(lab)
    vip = site.vips[0].address
    master = lab.masters()[vip]
    other = next(n.name for n in site.nodes if n.name != master)
    held = lab.hold(vip, timeout=TIMEOUT)
    probe = lab.probe(timeout=TIMEOUT)
    time.sleep(1.0)
    out = lab.agent(master, "drain", "--wait", "1").stdout
    time.sleep(0.5)
    results = probe.stop()
    conns = held.stop()

    assert "drained: gave up " in out and vip in out
    assert lab.vip_holders()[vip] == [other]
    info = json.loads(lab.node_path(master, "/var/lib/ha-ingress-proxy/drain.json").read_text())
    assert info["gave_up"] == list(lab.masters_of(master)) and info["haproxy_flag"] is True
    # New requests never fail; the only ones that may are those in flight across the ARP change
    # (their remaining packets reach the new master, which resets them).
    moved = info["moved_monotonic"]
    failed = [r for r in results if not r[3]]
    assert [r for r in failed if not (r[0] <= moved + 0.1 and r[1] >= moved - 0.1)] == []
    # The keep-alive client was told `Connection: close` and left cleanly; the stream, held
    # beyond --wait, was open at the move and is reset: exactly what drain reported.
    assert conns["http"]["resets"] == 0 and conns["http"]["clean_closes"] >= 1
    assert info["streams_left_at_move"] >= 1
    assert conns["tcp"]["resets"] == 1

    report = _status(lab, master)
    assert report["drain"]["drained"] is True
    assert report["held"] == [] and set(report["vrrp"].values()) == {"FAULT"}
    assert report["haproxy"]["drain_flag"] is True
    assert lab.node_path(master, "/var/lib/ha-ingress-proxy/drain").read_text() == "1\n"

    lab.agent(master, "resume")
    if site.vrrp.preempt:
        lab.wait_vips(lab.masters(), timeout=10)  # the master takes its VIPs back
    else:
        time.sleep(1.5)  # nopreempt: several master-down intervals; the VIP must stay
        assert lab.vip_holders()[vip] == [other]
    report = _status(lab, master)
    assert report["drain"]["drained"] is False and report["haproxy"]["drain_flag"] is False
    assert "FAULT" not in report["vrrp"].values()


def test_drain_refused_when_no_other_node_is_healthy_and_force_overrides(make_lab):
    from .conftest import load

    site = load("active-passive")
    lab = make_lab(site)
    lab.wait_vips(lab.masters())
    _applied(lab)
    vip = site.vips[0].address
    lab.kill_node("proxy-2")
    proc = lab.agent("proxy-1", "drain", "--wait", "0", check=False)
    assert proc.returncode == 1
    # the stats page is on loopback (the default): the peers' haproxy cannot be asked first, so drain
    # checks after the move that another node answers for the VIP; nobody does: refused and undone
    assert proc.stdout.strip().splitlines()[-1] == (
        "ha-ingress-proxy: drain refused: no other node answered for 192.168.1.10 on port 80 after the move; "
        "drain undone (this node takes the VIP back); --force keeps it drained")
    lab.wait_vips({vip: "proxy-1"})
    assert lab.node_path("proxy-1", "/var/lib/ha-ingress-proxy/drain").read_text().strip() == "0"

    out = lab.agent("proxy-1", "drain", "--wait", "0", "--force").stdout
    assert "warning: nothing answers for 192.168.1.10 (--force)" in out
    assert lab.vip_holders()[vip] == []
    assert _status(lab, "proxy-1")["drain"]["info"]["orphaned"] == [vip]


def test_lab_nodes_keep_their_drain_state_private(make_lab):
    """The drain file's directory is private per lab node (keepalived needs it to exist)."""
    from .conftest import load

    lab = make_lab(load("active-passive"))
    paths = [lab.node_path(n.name, "/var/lib/ha-ingress-proxy") for n in lab.site.nodes]
    assert all(p.is_dir() for p in paths)
    (paths[0] / "marker").write_text("x")
    assert not (paths[1] / "marker").exists()
    assert "var/lib/ha-ingress-proxy" in netns_lab.NODE_PRIVATE
