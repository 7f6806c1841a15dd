"""Failure scenarios, both modes, real daemons: the VIPs move (or stay), traffic continues.

Timings are measured by `invoke bench --failover`, not asserted here; the
probe's timeout is generous (1 s) so a loaded machine does not fail a test.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ha_ingress_lab import failover_scenarios

TIMEOUT = 1.0


def tail_ok(res, seconds: float = 0.5) -> bool:
    """Every request of the last `seconds` of the run succeeded: traffic continues."""
    end = max(r[0] for r in res.results)
    tail = [r for r in res.results if r[0] >= end - seconds]
    return bool(tail) and all(r[3] for r in tail)


def test_steady_every_vip_on_one_node_and_every_cluster_reached(site, make_lab):
    lab = make_lab(site)
    res = failover_scenarios.run(lab, "steady", timeout=TIMEOUT)
    assert res.before == res.after == {vip: [node] for vip, node in lab.masters().items()}
    assert res.failed_requests == 0
    assert isinstance(res.notes["false_failovers"], int)  # measured by `invoke bench`, not asserted (load)
    clusters = sorted(c.name for c in site.clusters)
    assert set(res.notes["clusters_per_target"]) == set(lab.targets())
    assert all(v == clusters for v in res.notes["clusters_per_target"].values())


def test_saturation_is_measured_and_every_vip_ends_on_one_node(site, make_lab):
    """No fault, wrk at full rate on every VIP and a busy loop per CPU in every node's namespace for a
    few seconds (60 s in `invoke bench --advert-curve`). The false-failover count is a measurement
    (it depends on the machine's load: on the shared 2-core machine it is not 0, docs/lab.md), so it
    is recorded, not asserted; what must hold is that load was applied, every transition counted is
    a MASTER transition, and no VIP is left on two nodes afterwards."""
    lab = make_lab(site)
    sat = failover_scenarios.saturated(lab, 5)
    assert sat["wrk_rps"] > 0, sat
    assert sat["false_failovers"] == len(sat["transitions"])
    assert all("Entering MASTER STATE" in t for t in sat["transitions"])
    holders = lab.wait_vips(None, timeout=10)
    assert all(len(h) == 1 for h in holders.values()), holders


@pytest.mark.parametrize("scenario", ["node-death", "haproxy-death", "keepalived-stop"])
def test_master_failure_moves_the_vip_and_traffic_continues(site, make_lab, scenario):
    lab = make_lab(site)
    res = failover_scenarios.run(lab, scenario, timeout=TIMEOUT)
    vip = site.vips[0].address
    assert res.notes["moved"], res.record()
    assert res.after[vip] == [n.name for n in site.nodes if n.name != res.notes["victim"]][:1]
    assert all(len(h) == 1 for h in res.after.values())
    assert res.recovered and tail_ok(res), res.record()
    if scenario == "haproxy-death":  # the watcher's track_file reported it (the 1 s check may too, later)
        assert "watcher" in res.notes["fault_by"], res.record()


def test_failback_without_preempt_leaves_the_vip_where_it_is(site, make_lab):
    lab = make_lab(replace(site, vrrp=replace(site.vrrp, preempt=False)))  # the project default
    res = failover_scenarios.run(lab, "failback", timeout=TIMEOUT)
    assert res.notes["vip_moved_back"] is False
    assert res.after == res.before
    # Zero failed requests is a bench target (measured, not asserted); here: traffic continues.
    assert res.recovered and tail_ok(res), res.record()


def test_failback_with_preempt_takes_the_vip_back(site, make_lab):
    lab = make_lab(replace(site, vrrp=replace(site.vrrp, preempt=True)))
    res = failover_scenarios.run(lab, "failback", timeout=TIMEOUT)
    assert res.notes["vip_moved_back"] is True
    assert res.after[site.vips[0].address] == [site.nodes[0].name]
    assert res.recovered and tail_ok(res), res.record()


def test_cluster_down_sends_everything_to_the_other_cluster(site, make_lab):
    lab = make_lab(site)
    res = failover_scenarios.run(lab, "cluster-down", timeout=TIMEOUT)
    assert res.notes["tail_clusters"] == [res.notes["other"]]
    assert res.notes["tail_failed"] == 0


def test_all_clusters_down_answers_503_at_once(site, make_lab):
    lab = make_lab(site)
    res = failover_scenarios.run(lab, "all-clusters-down", timeout=TIMEOUT)
    assert res.notes["tail_statuses"] == [503]
    assert res.notes["tail_max_ms"] < 1000  # a prompt answer, not a hang until the client gives up
    status, _ = lab.request(site.vips[0].address, 80)
    assert status == 503


def test_split_brain_duplicates_the_vips_heals_and_clients_recover_without_arp_flapping(site, make_lab):
    """Default settings (no periodic gratuitous ARP): during the split each VIP's client ARP entry
    moves once (to the node that became a second master) and stays; at the heal the winner
    re-announces (garp_lower_prio_repeat + higher_prio_send_advert), so clients recover."""
    lab = make_lab(site)
    res = failover_scenarios.run(lab, "split-brain", timeout=TIMEOUT, post=3.0)
    assert res.notes["duplicate_vips"], res.record()
    assert all(len(h) == len(site.nodes) for h in res.notes["during_split"].values())
    assert res.notes["healed"]
    assert res.after == res.before  # priorities decide once the nodes hear each other again
    assert res.notes["arp_flips"] <= 1, res.record()
    assert res.recovered and tail_ok(res), res.record()


def test_split_brain_with_garp_refresh_clients_recover_after_the_heal(site, make_lab):
    """The mitigation: masters re-announce their VIPs every second (vrrp.garp_refresh 1),
    so a client whose ARP entry points at the node that gave the VIP up is corrected."""
    lab = make_lab(replace(site, vrrp=replace(site.vrrp, garp_refresh=1)))
    res = failover_scenarios.run(lab, "split-brain", timeout=TIMEOUT, post=3.0)
    assert res.notes["duplicate_vips"] and res.notes["healed"]
    assert res.recovered and tail_ok(res), res.record()
