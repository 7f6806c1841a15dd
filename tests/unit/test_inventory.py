"""The loader: every kind of bad inventory refused with its exact message, nothing written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from ha_ingress_proxy import inventory
from ha_ingress_proxy.inventory import InventoryError


def load_text(tmp_path: Path, text: str, name: str = "site.yaml") -> inventory.Site:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return inventory.load(path)


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_text(tmp_path, text)
    return info.value.lines


def mutate(example_text, tmp_path: Path, fn, mode: str = "active-active") -> list[str]:
    data = yaml.safe_load(example_text(mode))
    fn(data)
    with pytest.raises(InventoryError) as info:
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        inventory.load(path)
    return [line.replace(str(tmp_path) + "/", "") for line in info.value.lines]


def test_examples_load(example_text, tmp_path):
    aa = load_text(tmp_path, example_text("active-active"))
    assert [n.name for n in aa.nodes] == ["proxy-1", "proxy-2"]
    assert [(v.address, v.router_id) for v in aa.vips] == [("192.168.1.10", 51), ("192.168.1.12", 61)]
    assert [(s.name, s.port, s.mode) for s in aa.services] == [("http", 80, "http"), ("https", 443, "tcp")]
    assert aa.stats.bind == "127.0.0.1" and aa.stats.tls is True and aa.stats.allow == () and aa.vrrp.unicast is True and aa.target == "el9" and aa.vrrp.preempt is True
    ap = load_text(tmp_path, example_text("active-passive"))
    assert ap.mode == "active-passive" and len(ap.vips) == 1


def test_bad_address_message_is_exact(example_text, tmp_path):
    lines = mutate(example_text, tmp_path, lambda d: d["nodes"][1].update(address="192.168.1.300"))
    assert lines == ["site.yaml: nodes[1].address: '192.168.1.300' is not an IPv4 address"]


def test_schema_version_checked_first(tmp_path):
    assert errors(tmp_path, "schema_version: 2\nbogus: 1\n") == [
        f"{tmp_path}/site.yaml: schema_version: 2 is not supported (this tool reads schema_version 1)"
    ]
    assert errors(tmp_path, "site: x\n") == [
        f"{tmp_path}/site.yaml: schema_version: required key is missing (this tool reads schema_version 1)"
    ]


def test_unknown_and_duplicate_keys(example_text, tmp_path):
    lines = mutate(example_text, tmp_path, lambda d: d["stats"].update(colour="red"))
    assert lines == ["site.yaml: stats.colour: unknown key (known: allow, bind, path, port, tls, user)"]
    text = example_text().replace("mode: active-active", "mode: active-active\nmode: active-passive")
    assert errors(tmp_path, text) == [
        f"{tmp_path}/site.yaml: line 6 column 1: duplicate key 'mode' (first at line 5)"
    ]


def test_aliases_and_tags_refused(tmp_path):
    bomb = "schema_version: 1\na: &a [x, x]\nb: [*a, *a]\n"
    assert errors(tmp_path, bomb) == [f"{tmp_path}/site.yaml: line 3 column 5: YAML aliases are not allowed (*a)"]
    lines = errors(tmp_path, "schema_version: 1\nsite: !!python/object/apply:os.system ['true']\n")
    assert len(lines) == 1 and "could not determine a constructor" in lines[0]


def test_every_problem_is_collected(example_text, tmp_path):
    def breakit(d):
        d["nodes"][0]["name"] = "proxy 1"
        d["vips"][0]["router_id"] = 300
        d["services"][1]["port"] = 8888
        d["interface"] = "eth0\nfoo"

    assert mutate(example_text, tmp_path, breakit) == [
        "site.yaml: interface: 'eth0\\nfoo' is not a Linux interface name ([A-Za-z0-9_.-], at most 15)",
        "site.yaml: nodes[0].name: 'proxy 1' is not a name ([A-Za-z0-9_.-], starting with a letter or digit, at most 63)",
        "site.yaml: vips[0].router_id: 300 is not an integer in 1-255",
        "site.yaml: services[1].port: 8888 collides with stats.port",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["nodes"][1].update(name="proxy-1"), "nodes[1].name: 'proxy-1' is used twice as a node name (also at nodes[0].name)"),
        (lambda d: d["nodes"][1].update(address="192.168.1.9"), "nodes[1].address: '192.168.1.9' is used twice as a node address (also at nodes[0].address)"),
        (lambda d: d["vips"][1].update(address="192.168.1.10"), "vips[1].address: '192.168.1.10' is used twice as a VIP (also at vips[0].address)"),
        (lambda d: d["vips"][1].update(address="192.168.1.9"), "vips[1].address: '192.168.1.9' is also a node address (nodes[0].address)"),
        (lambda d: d["vips"][1].update(router_id=51), "vips[1].router_id: 51 is used twice as a router_id (also at vips[0].router_id)"),
        (lambda d: d["services"][1].update(port=80), "services[1].port: 80 is used twice as a service port (also at services[0].port)"),
        (lambda d: d["services"][1].update(port=0), "services[1].port: 0 is not an integer in 1-65535"),
        (lambda d: d["services"][1].update(port=True), "services[1].port: True is not an integer in 1-65535"),
        (lambda d: d["clusters"][1].update(endpoint="192.168.1.10"), "clusters[1].endpoint: '192.168.1.10' is an address of the proxy tier itself"),
        (lambda d: d["clusters"][0].update(name="k8s{1}"), "clusters[0].name: 'k8s{1}' is not a name ([A-Za-z0-9_.-], starting with a letter or digit, at most 63)"),
        (lambda d: d["clusters"][0].update(name="k8s#1"), "clusters[0].name: 'k8s#1' is not a name ([A-Za-z0-9_.-], starting with a letter or digit, at most 63)"),
        (lambda d: d["clusters"][0].update(name='k8s"1'), "clusters[0].name: 'k8s\"1' is not a name ([A-Za-z0-9_.-], starting with a letter or digit, at most 63)"),
        (lambda d: d.update(interface="a-very-long-ifname0"), "interface: 'a-very-long-ifname0' is not a Linux interface name ([A-Za-z0-9_.-], at most 15)"),
        (lambda d: d.update(interface="eth/0"), "interface: 'eth/0' is not a Linux interface name ([A-Za-z0-9_.-], at most 15)"),
        (lambda d: d["nodes"][0].update(interface=".."), "nodes[0].interface: '..' is not a Linux interface name ([A-Za-z0-9_.-], at most 15)"),
        (lambda d: d["stats"].update(path="/proxy stats"), "stats.path: '/proxy stats' is not a URL path like /proxy"),
        (lambda d: d["stats"].update(bind="10.0.0.1"), "stats.bind: '10.0.0.1' is neither 'node', '127.0.0.1' nor a node or VIP address of this site"),
        (lambda d: d.update(mode="active-standby"), "mode: 'active-standby' is not one of: active-active, active-passive, bgp"),
        (lambda d: d.update(site="DC1"), "site: 'DC1' is not a site name ([a-z0-9-], at most 40, no leading or trailing '-')"),
        (lambda d: d["vips"].pop(), "vips: active-active takes one VIP per node: 2 nodes, 1 VIPs"),
        (lambda d: d["nodes"][0].update(address="224.0.0.18"), "nodes[0].address: '224.0.0.18' is not a unicast host address"),
        (lambda d: d.update(health={"inter": "2 s"}), "health.inter: '2 s' is not a haproxy duration like 2s or 500ms"),
        (lambda d: d.update(vrrp={"advert_int": 0.005}), "vrrp.advert_int: 0.005 is not a number of seconds in 0.01-255 (centisecond steps)"),
        (lambda d: d.update(nodes="proxy-1"), "nodes: 'proxy-1' is not a list"),
        (lambda d: d.update(stats=None), "stats: required key is missing"),
        (lambda d: d.update(metrics={"bind": "0.0.0.0"}), "metrics.bind: '0.0.0.0' is not one of: 127.0.0.1, node"),
        (lambda d: d.update(metrics={"haproxy_port": 8888}), "metrics.haproxy_port: 8888 collides with stats.port"),
        (lambda d: d.update(metrics={"node_port": 443}), "metrics.node_port: 443 collides with services[1].port"),
        (lambda d: d.update(metrics={"node_port": 9101}), "metrics.node_port: 9101 collides with metrics.haproxy_port"),
        (lambda d: d.update(metrics={"haproxy": "yes"}), "metrics.haproxy: 'yes' is not true or false"),
        (lambda d: d.update(metrics={"allow": ["10.0.0.0/8"]}), "metrics.allow: only applies to metrics on bind: node (they are on 127.0.0.1)"),
        (lambda d: d.update(metrics={"tls": "no"}), "metrics.tls: 'no' is not true or false"),
    ],
)
def test_semantic_refusals(example_text, tmp_path, change, expected):
    assert mutate(example_text, tmp_path, change) == [f"site.yaml: {expected}"]


def test_metrics_defaults_are_loopback_and_the_exporter_on(example_text, tmp_path):
    site = load_text(tmp_path, example_text("active-active"))
    assert (site.metrics.bind, site.metrics.haproxy, site.metrics.haproxy_port, site.metrics.node_port) == ("127.0.0.1", True, 9101, 9165)


def test_metrics_on_the_node_address_are_tls_and_closed_to_all_but_metrics_allow(example_text, tmp_path):
    from ha_ingress_proxy import layout, render

    text = example_text("active-active") + "metrics: {bind: node, allow: [10.9.0.0/16]}\n"
    tree = render.render_node(load_text(tmp_path, text), "proxy-1")
    cfg = tree[layout.HAPROXY_CFG].content.decode()
    assert "    bind 192.168.1.9:9101 ssl crt /etc/ha-ingress-proxy/stats.pem ssl-min-ver TLSv1.2\n" in cfg
    unit = tree[layout.METRICS_UNIT].content.decode()
    assert "ExecStart=/usr/bin/ha-ingress-proxy metrics --listen node:9165 --tls-cert /etc/ha-ingress-proxy/stats.pem\n" in unit
    nft = tree[layout.FIREWALL_NFT].content.decode()
    assert "elements = { 10.9.0.0/16 }" in nft
    assert 'tcp dport { 9101, 9165 } ip saddr != @metrics_allow counter drop comment "metrics"' in nft
    plain = render.render_node(load_text(tmp_path, text.replace("allow: [10.9.0.0/16]", "tls: false")), "proxy-1")
    assert "    bind 192.168.1.9:9101\n" in plain[layout.HAPROXY_CFG].content.decode()
    assert "--tls-cert" not in plain[layout.METRICS_UNIT].content.decode()


def test_active_passive_takes_one_vip(example_text, tmp_path):
    lines = mutate(example_text, tmp_path, lambda d: d["vips"].append({"address": "192.168.1.12"}), mode="active-passive")
    assert lines == ["site.yaml: vips: active-passive takes exactly one VIP, got 2"]


def test_unreadable_and_not_utf8(tmp_path):
    with pytest.raises(InventoryError) as info:
        inventory.load(tmp_path / "missing.yaml")
    assert info.value.lines == [f"{tmp_path}/missing.yaml: cannot read: No such file or directory"]
    (tmp_path / "bin.yaml").write_bytes(b"site: \xff\xfe\n")
    with pytest.raises(InventoryError) as info:
        inventory.load(tmp_path / "bin.yaml")
    assert info.value.lines == [f"{tmp_path}/bin.yaml: not UTF-8 text (byte 6)"]


def test_router_ids_derived_deterministically(example_text, tmp_path):
    data = yaml.safe_load(example_text())
    for vip in data["vips"]:
        del vip["router_id"]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    first = [v.router_id for v in inventory.load(path).vips]
    assert first == [v.router_id for v in inventory.load(path).vips]
    assert len(set(first)) == 2 and all(1 <= r <= 255 for r in first)
    # an explicit id is kept, and a derived one never collides with it
    ids = inventory.derive_router_ids("dc1-ingress", [None, first[0], None])
    assert ids[1] == first[0] and len(set(ids)) == 3


# --------------------------------------------------------------------------- issue 10: trust boundaries


def test_defaults_close_vrrp_and_stats(example_text, tmp_path):
    s = load_text(tmp_path, example_text("active-passive"))
    assert s.vrrp.unicast is True and s.vrrp.filter is True
    assert (s.stats.bind, s.stats.tls, s.stats.allow) == ("127.0.0.1", True, ())


@pytest.mark.parametrize(
    "allow, words",
    [
        ("10.0.0.0/8", "is not a list of IPv4 CIDRs"),
        (["10.0.0.1/8"], "host bits must be zero"),
        (["10.0.0.1"], "needs a prefix length, e.g. 10.0.0.1/32"),
        (["0.0.0.0/0"], "opens the stats page to every address"),
        (["10.0.0.0/8", "10.0.0.0/8"], "lists a CIDR twice"),
        ([42], "42 is not an IPv4 CIDR"),
    ],
)
def test_bad_stats_allow(example_text, tmp_path, allow, words):
    lines = mutate(example_text, tmp_path, lambda d: d["stats"].update(bind="node", allow=allow))
    assert len(lines) == 1 and lines[0].startswith("site.yaml: stats.allow: ") and words in lines[0], lines


def test_stats_allow_needs_a_non_loopback_bind(example_text, tmp_path):
    lines = mutate(example_text, tmp_path, lambda d: d["stats"].update(allow=["10.0.0.0/8"]))
    assert lines == ["site.yaml: stats.allow: only applies to a stats page on a non-loopback stats.bind (it is on 127.0.0.1)"]


@pytest.mark.parametrize("key, section", [("tls", "stats"), ("filter", "vrrp"), ("unicast", "vrrp")])
def test_security_switches_are_booleans(example_text, tmp_path, key, section):
    def change(d):
        d.setdefault(section, {})
        d[section] = {**(d[section] or {}), key: "no"}
    lines = mutate(example_text, tmp_path, change)
    assert lines == [f"site.yaml: {section}.{key}: 'no' is not true or false"]


def test_log_ring_is_refused_on_el8(example_text, tmp_path):
    """haproxy's ring buffers arrived in 2.2; EL8 ships 1.8 (udp and unix work there)."""
    lines = mutate(example_text, tmp_path, lambda d: (d.update(target="el8"), d.setdefault("haproxy", {}).update(log_transport="ring")))
    assert lines == ["site.yaml: haproxy.log_transport: 'ring' needs haproxy >= 2.2; target el8 ships haproxy 1.8 (use udp or unix)"]
    lines = mutate(example_text, tmp_path, lambda d: d.setdefault("haproxy", {}).update(log_transport="tcp"))
    assert lines == ["site.yaml: haproxy.log_transport: 'tcp' is not one of: udp, unix, ring"]


def test_l7_retries_are_refused_on_el8_and_off_there_by_default(example_text, tmp_path):
    """`retry-on` and `disable-l7-retry` arrived in haproxy 2.0; EL8 ships 1.8."""
    lines = mutate(example_text, tmp_path, lambda d: (d.update(target="el8"), d.setdefault("haproxy", {}).update(l7_retries="safe")))
    assert lines == ["site.yaml: haproxy.l7_retries: 'safe' needs haproxy >= 2.0; target el8 ships haproxy 1.8 (use off)"]
    lines = mutate(example_text, tmp_path, lambda d: d.setdefault("haproxy", {}).update(l7_retries="all"))
    assert lines == ["site.yaml: haproxy.l7_retries: 'all' is not one of: safe, off"]
