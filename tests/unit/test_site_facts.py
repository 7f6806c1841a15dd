"""The ports the package's scriptlets act on: haproxy's metrics port is labelled for SELinux; firewalld
opens the metrics ports, when they are off loopback, to metrics.allow only (the stats page's rule)."""

from __future__ import annotations

from ha_ingress_build import payload
from ha_ingress_proxy import inventory, render


def _facts(example_text, extra: str = "") -> payload.SiteFacts:
    site = inventory.validate(inventory.parse_yaml(example_text("active-active") + extra, "x.yaml"), "x.yaml")
    return payload.site_facts(render.site_model(site).content)


def test_loopback_metrics_open_nothing(example_text):
    facts = _facts(example_text)
    assert facts.tcp_ports == (80, 443, 8888, 9101)
    assert facts.public_ports == (80, 443)  # stats on loopback by default: nothing to open (issue 10)
    assert (facts.stats_port, facts.stats_allow) == (0, ())


def test_node_bound_metrics_are_opened_only_to_metrics_allow(example_text):
    facts = _facts(example_text, "metrics: {bind: node, node_port: 9200, allow: [10.9.0.0/16]}\n")
    assert facts.public_ports == (80, 443)
    assert (facts.metrics_ports, facts.metrics_allow) == ((9101, 9200), ("10.9.0.0/16",))


def test_no_haproxy_exporter_no_haproxy_port(example_text):
    facts = _facts(example_text, "metrics: {bind: node, haproxy: false}\n")
    assert facts.tcp_ports == (80, 443, 8888)
    assert facts.public_ports == (80, 443)
    assert (facts.metrics_ports, facts.metrics_allow) == ((9165,), ())


def test_a_non_loopback_stats_page_is_opened_only_to_stats_allow(example_text):
    text = example_text("active-active").replace("stats: {port: 8888, path: /proxy}",
                                                 "stats: {port: 8888, path: /proxy, bind: node, allow: [10.1.0.0/16]}")
    site = inventory.validate(inventory.parse_yaml(text, "x.yaml"), "x.yaml")
    facts = payload.site_facts(render.site_model(site).content)
    assert 8888 not in facts.public_ports
    assert (facts.stats_port, facts.stats_allow) == (8888, ("10.1.0.0/16",))
