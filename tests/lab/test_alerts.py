"""The shipped alert rules, evaluated by a real Prometheus (Debian's package) scraping a running lab.

Prometheus runs in the lab's client namespace and scrapes every node's `ha-ingress-proxy metrics`
(started as its unit starts it, after the real agent applied the node's role) and haproxy's exporter,
at the nodes' lab addresses, every second, evaluating every second. Every `for:` is shortened
(x0.1, at least 3 s; the expressions are the shipped ones) to keep the suite short; `invoke bench
--alerts` measures with the shipped durations and writes build/bench/alerts.json.

Asserted per scenario: the alerts it must raise fire, nothing else fires (node-death: never
VipNoMaster), and everything clears after the fault is healed. steady: nothing fires.
"""

from __future__ import annotations

from ha_ingress_lab import alert_scenarios
from ha_ingress_lab.prometheus_lab import Prometheus, metrics_site

from .conftest import load


def test_alerts_fire_and_clear_with_a_real_prometheus(make_lab):
    lab = make_lab(metrics_site(load("active-active")))
    lab.wait_vips(lab.masters())
    alert_scenarios.prepare(lab)
    with Prometheus(lab, scrape=1.0, evaluation=1.0, for_scale=0.1, for_floor=3.0) as prom:
        prom.wait_targets_up()
        # the two endpoints answer with the real daemons' view, also through Prometheus
        held = {r["metric"]["instance"].split(":")[0]: r["value"][1] for r in prom.query('ha_ingress_vip_held{vip="192.168.1.10"}')}
        assert held == {"192.168.1.9": "1", "192.168.1.11": "0"}
        assert prom.query('haproxy_backend_active_servers{proxy="http"} == 2')
        results = {}
        for scenario in alert_scenarios.SCENARIOS:
            res = alert_scenarios.run(lab, prom, scenario, steady_s=8.0)
            results[scenario] = res
            summary = (scenario, sorted(res.fired()), {k[0]: (s.fire_s, s.clear_s) for k, s in res.seen.items()}, res.notes)
            assert res.quiet_before, summary
            assert not res.missing(), summary
            assert not res.unexpected(), summary
            assert res.healed_s is not None, summary
        # nothing fires without a fault (a pending blip on this loaded machine is allowed: that is what `for` is for)
        assert not results["steady"].fired(), results["steady"].seen
        # node death: ProxyNodeDown for the victim only, and no node without the VIP (not even pending long)
        nd = results["node-death"]
        assert {s.labels.get("instance") for s in nd.seen.values() if s.name == "ProxyNodeDown"} == {"192.168.1.9:9165"}
        assert all(s.pending_max_s <= 2.0 for s in nd.seen.values() if s.name == "VipNoMaster"), nd.seen
        assert {s.labels.get("vip") for s in results["split-brain"].seen.values() if s.name == "VipDualMaster"} == \
            {"192.168.1.10", "192.168.1.12"}
        assert {s.labels.get("server") for s in results["cluster-down"].seen.values() if s.name == "ClusterDown"} == {"k8s-1"}
    # the same exporters serve the node's facts to anyone on the node, as `status` shows them
    out = lab.agent("proxy-1", "metrics", "--once").stdout
    assert 'ha_ingress_agent_info{site="dc1-ingress",node="proxy-1"' in out
