"""The day-2 bench scenarios (drain, reload) run as `invoke bench` runs them, short, ours and the seed's way."""

from __future__ import annotations

from ha_ingress_lab import failover_scenarios

from .conftest import load

TIMEOUT = 2.5  # generous, as in test_drain.py: the shared machine stalls now and then


def test_reload_scenario_ours_drops_nothing_and_moves_no_vip(make_lab):
    lab = make_lab(load("active-passive"), backend="python")  # the held stream is the plain TCP echo (bench.SCENARIO_BACKEND)
    res = failover_scenarios.run(lab, "reload", timeout=TIMEOUT, duration=5)
    rec = res.record()
    assert rec["how"] == "reload" and rec["reloads"] >= 3
    assert rec["vip_stayed"] is True
    assert rec["failed_requests"] == 0
    assert rec["long_lived_resets"] == 0 and rec["long_lived_exchanges"] > 0


def test_drain_scenario_both_ways(make_lab):
    site = load("active-passive")
    ours = failover_scenarios.run(make_lab(site, backend="python"), "drain", timeout=TIMEOUT).record()
    assert ours["how"] == "drain" and ours["moved"] is True
    assert ours["keepalive_resets"] == 0 and ours["keepalive_clean_closes"] >= 1
    # the held stream outlives --wait: open at the move, reset by it, and drain said so
    assert ours["stream_resets"] == ours["streams_left_at_move"] == 1
    seed = failover_scenarios.run(make_lab(site, backend="python"), "drain", timeout=TIMEOUT, settings="seed").record()
    assert seed["how"] == "keepalived stop" and seed["moved"] is True
    assert seed["keepalive_clean_closes"] == 0  # nobody told the keep-alive client to leave
