"""The failover scenarios are a registry: one function per contract name, `run` dispatches through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ha_ingress_lab import failover_scenarios

CONTRACT = ("steady", "node-death", "haproxy-death", "keepalived-stop", "failback", "failback-late-arp",
            "cluster-down", "cluster-blackhole", "all-clusters-down", "split-brain",
            "cluster-drain", "ingress-restart", "flapping-cluster", "drain", "reload",
            "rogue-vrrp")  # the bench contract's names (docs/lab.md), in report order


def test_every_contract_scenario_is_registered_in_order():
    assert failover_scenarios.SCENARIOS == CONTRACT
    assert set(failover_scenarios.REGISTRY) == set(CONTRACT)
    assert len({id(fn) for fn in failover_scenarios.REGISTRY.values()}) == len(CONTRACT)


def test_unknown_scenario_is_refused_before_touching_the_lab():
    # lab=None: the name is checked before anything uses the lab.
    with pytest.raises(ValueError, match="unknown scenario 'nope'; known: steady, node-death"):
        failover_scenarios.run(None, "nope")


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="registered twice"):
        failover_scenarios.scenario("steady")(lambda r: None)
    assert failover_scenarios.REGISTRY["steady"] is not None


def test_the_lab_bench_makes_a_site_for_every_setting_it_reports():
    from ha_ingress_lab import bench

    inv = Path(__file__).resolve().parents[2] / "examples" / "active-active.yaml"
    assert tuple(bench.sites(inv)) == bench.SETTINGS
