"""mode: bgp in the lab: a real FRR router with ECMP and BFD, real FRR and haproxy on each node, the bgp-gate.

Behaviour only (timings are in `invoke bench --bgp`, bgp_scenarios.py):
the VIP has one router path per node and the client reaches both nodes through it;
a dead haproxy makes its node withdraw (the gate); a node that dies without a word
loses its path (BFD; the BGP hold time, 9 s, is longer than the wait); a haproxy
that comes back is announced again. The bench's probe-loop scenario machinery
works in this mode: haproxy-death's failed requests end with the withdraw.
"""

from __future__ import annotations

import time

import pytest

from ha_ingress_lab import bgp_scenarios
from ha_ingress_lab.bgp_lab import BgpLab, PathWatch, bgp_site

from ..conftest import need_root_and

BFD_WAIT = 5.0  # well above BFD's 0.9 s, well below the 9 s hold time: only BFD can take the path out in time


@pytest.fixture
def lab():
    need_root_and("ip", "nft", "haproxy", "vtysh", "curl", "/usr/lib/frr/bgpd", "/usr/lib/frr/bfdd", "/usr/lib/frr/zebra")
    site = bgp_site(2)
    with BgpLab(site) as lab:
        assert lab.wait_paths(site.vips[0].address, 2, 60) == ["10.77.0.11", "10.77.0.12"]
        assert lab.wait_bfd(2, 60) == ["10.77.0.11", "10.77.0.12"]  # BFD comes up seconds after BGP
        yield lab


def test_ecmp_both_nodes_then_gate_withdraw_bfd_and_return(lab):
    vip = lab.site.vips[0].address
    answers = {lab.fetch(vip, 41000 + i) for i in range(16)}
    assert answers == {"n1", "n2"}, answers  # the router spreads flows (5-tuple hash) over both nodes

    lab.kill_haproxy("n1")
    assert lab.wait_paths(vip, 1, 10) == ["10.77.0.12"]
    assert {lab.fetch(vip, 42000 + i) for i in range(6)} == {"n2"}
    assert any("withdrew" in line for line in lab.log)

    lab.start_haproxy("n1")  # rise: announced again
    assert lab.wait_paths(vip, 2, 15) == ["10.77.0.11", "10.77.0.12"]

    lab.kill_node("n2")  # silent (all packets dropped): no withdraw, no FIN; only BFD can tell the router in time
    started = time.monotonic()
    assert lab.wait_paths(vip, 1, BFD_WAIT) == ["10.77.0.11"], "the dead node's path outlived BFD's detection"
    assert time.monotonic() - started < BFD_WAIT
    assert {lab.fetch(vip, 43000 + i) for i in range(6)} == {"n1"}


def test_probe_loop_haproxy_death_failures_end_with_the_withdraw(lab):
    vip = lab.site.vips[0].address
    # timeout 2 s: on a loaded machine a slow answer is not a failure here; a dead haproxy's RST is one at once
    res = bgp_scenarios.run(lab, "haproxy-death", timeout=2.0)
    assert res.after == {vip: ["10.77.0.12"]}, res.notes["gate_log"]
    assert res.notes["withdraw_ms"] is not None
    assert res.notes["served_before"], res.notes  # the probe was answered before the fault
    assert res.recovered
    # no request started after the router's route lost n1 failed: the failures were n1's, and they ended
    withdrawn = res.notes["withdraw_ms"]
    assert all(started <= withdrawn for started, _ in res.notes["failures"]), (res.notes["failures"], withdrawn)
    assert set(res.notes["served_last_second"]) == {"n2"}, res.notes["served_last_second"]


def test_drain_takes_the_node_out_of_the_routers_ecmp_set_without_failing_requests_and_resume_brings_it_back(lab):
    """`drain` in mode bgp (drain_bgp, as the CLI runs it, with the lab's root and vtysh): the gate withdraws, the
    router's ECMP set loses n1, new connections go to n2 without one failing; resume announces n1 again.

    A request whose connection was open at the moment the router changed its set can be reset (its remaining
    packets are hashed to n2): that is what drain's --wait and the keep-alive flag shrink, not what they can
    avoid. Such a request may fail; no other may."""
    vip = lab.site.vips[0].address
    watch = PathWatch(lab, vip)
    probe = lab.probe(timeout=2.5)  # generous: a starved client on this shared machine is not a failure here
    time.sleep(0.5)
    out = lab.drain("n1", wait=1.0)
    assert lab.wait_paths(vip, 1, 10) == ["10.77.0.12"]
    time.sleep(0.5)
    results = probe.stop()  # [t0, t1, target, ok, status, node that answered]
    changes = watch.stop()

    info = out.info
    assert info["withdrew"] == [vip] and info["haproxy_flag"] is True and info["peers_haproxy"] == {"n2": True}
    assert out.lines[0].startswith(f"drained: withdrew {vip} from 10.77.0.1 in "), out.lines
    assert lab.root("n1").joinpath("var/lib/ha-ingress-proxy/drain").read_text() == "1\n"
    lo, hi, _ = next(c for c in changes if c[2] == ["10.77.0.12"])
    assert lo >= info["moved_monotonic"] - 0.05  # the router's set changed after drain wrote the flag, not before
    failed = [r for r in results if not r[3]]
    assert [r for r in failed if not (r[0] <= hi + 0.05 and r[1] >= lo - 0.05)] == [], failed
    after = [r for r in results if r[0] > hi + 0.05]
    assert after and {r[5] for r in after} == {"n2"}  # every new connection after the change: n2 answers
    assert {r[5] for r in results if r[1] < lo and r[3]} == {"n1", "n2"}  # before it, both did

    report, lines = lab.status("n1")
    assert report["bgp"]["announced"] == [] and report["bgp"]["gate"]["drained"] is True
    assert report["bgp"]["frr"]["peers"][0]["bgp"] == "Established"  # withdrawn, not disconnected
    assert lines[0].startswith("drain     DRAINED since "), lines
    assert "gate      withdraws: node drained (checks every 200 ms, rise 3, fall 2)" in lines
    assert lab.drain("n1", wait=0).lines[0].startswith("already drained since ")
    back = lab.resume("n1")
    assert back.lines[-1].startswith(f"resumed: announcing {vip} to 10.77.0.1 again (")
    assert lab.wait_paths(vip, 2, 10) == ["10.77.0.11", "10.77.0.12"]
    assert lab.root("n1").joinpath("var/lib/ha-ingress-proxy/drain").read_text() == "0\n"
    report, lines = lab.status("n1")
    assert report["bgp"]["announced"] == [vip] and report["bgp"]["gate"]["announces"] is True
    assert lines[0] == "drain     no (serving)" and report["bgp"]["frr"]["peers"][0]["bfd"] in ("up", "down", "init")
