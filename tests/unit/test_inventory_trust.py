"""Inventory keys that draw trust boundaries (issue 10): node names YAML would misread, and vip_pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ha_ingress_proxy import inventory, render
from ha_ingress_proxy.inventory import InventoryError


def _load(tmp_path: Path, data: dict) -> inventory.Site:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return inventory.load(path)


def _errors(tmp_path: Path, data: dict) -> list[str]:
    with pytest.raises(InventoryError) as info:
        _load(tmp_path, data)
    return [line.replace(str(tmp_path) + "/", "") for line in info.value.lines]


# --------------------------------------------------------------------------- node names


@pytest.mark.parametrize(
    ("name", "reads_as"),
    [
        ("on", "a boolean"), ("Off", "a boolean"), ("yes", "a boolean"), ("NO", "a boolean"), ("true", "a boolean"),
        ("null", "null"), ("Null", "null"),
        ("010", "an integer"), ("8", "an integer"), ("1_000", "an integer"), ("0x1F", "an integer"),
        ("10.0", "a number"), ("1.", "a number"), ("2001-12-14", "a date"),
        # strings to PyYAML, but not to YAML 1.2 readers or to Go's yaml.v2
        ("1e3", "a boolean, number or null by some YAML readers"), ("0o17", "a boolean, number or null by some YAML readers"),
        ("y", "a boolean, number or null by some YAML readers"), ("N", "a boolean, number or null by some YAML readers"),
    ],
)
def test_node_names_yaml_reads_as_something_else_are_refused(example_text, tmp_path, name, reads_as):
    data = yaml.safe_load(example_text())
    data["nodes"][1]["name"] = name  # safe_dump quotes it, so the loader sees the string
    assert _errors(tmp_path, data) == [
        f"site.yaml: nodes[1].name: {name!r} is read as {reads_as} by YAML, not as a string: node names land unquoted "
        f"in hand-written meta-data and node.yaml; choose another, e.g. 'proxy-{name}'"
    ]


def test_an_unquoted_misread_name_is_refused_too(example_text, tmp_path):
    text = example_text().replace("name: proxy-2", "name: on", 1)
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        inventory.load(path)
    assert info.value.lines == [f"{path}: nodes[1].name: True is not a name ([A-Za-z0-9_.-], starting with a letter or digit, at most 63)"]


@pytest.mark.parametrize("name", ["proxy-9", "p1", "1a", "node010", "e3", "nan", "1.2.3", "on-1", "yes2"])
def test_ordinary_names_still_pass(example_text, tmp_path, name):
    data = yaml.safe_load(example_text())
    data["nodes"][1]["name"] = name
    assert _load(tmp_path, data).nodes[1].name == name
    # and YAML reads each back as the same string, unquoted
    assert yaml.safe_load(f"ha_ingress_node: {name}\n") == {"ha_ingress_node": name}


# --------------------------------------------------------------------------- vip_pool


def test_vip_pool_defaults_to_none_and_round_trips_through_the_site_model(example_text, tmp_path):
    data = yaml.safe_load(example_text())
    assert _load(tmp_path, data).vip_pool == ()
    data["vip_pool"] = ["192.168.1.32/28", "10.20.0.0/24"]
    site = _load(tmp_path, data)
    assert site.vip_pool == ("192.168.1.32/28", "10.20.0.0/24")
    # what the node's agent reads back
    assert inventory.validate(json.loads(render.site_model(site).content), "site.json") == site


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        ("192.168.1.32/28", ["vip_pool: '192.168.1.32/28' is not a list of IPv4 CIDRs like 192.168.1.32/28"]),
        ([32], ["vip_pool: [32] is not a list of IPv4 CIDRs like 192.168.1.32/28"]),
        (["192.168.1.40"], ["vip_pool[0]: '192.168.1.40' is not a CIDR: give the prefix length (e.g. 192.168.1.40/32)"]),
        (["192.168.1.33/28"], ["vip_pool[0]: '192.168.1.33/28' has host bits set (the network is 192.168.1.32/28)"]),
        (["192.168.1.300/28"], ["vip_pool[0]: '192.168.1.300/28' is not an IPv4 CIDR like 192.168.1.32/28"]),
        (["192.168.1.32/33"], ["vip_pool[0]: '192.168.1.32/33' is not an IPv4 CIDR like 192.168.1.32/28"]),
        (["0.0.0.0/0"], ["vip_pool[0]: '0.0.0.0/0' overlaps 0.0.0.0/8 ('this network'); VIPs are unicast host addresses"]),
        (["127.0.0.0/8"], ["vip_pool[0]: '127.0.0.0/8' overlaps 127.0.0.0/8 (loopback); VIPs are unicast host addresses"]),
        (["224.0.0.0/24"], ["vip_pool[0]: '224.0.0.0/24' overlaps 224.0.0.0/4 (multicast); VIPs are unicast host addresses"]),
        (["169.254.1.0/24"], ["vip_pool[0]: '169.254.1.0/24' overlaps 169.254.0.0/16 (link-local); VIPs are unicast host addresses"]),
        (["255.255.255.255/32"], ["vip_pool[0]: '255.255.255.255/32' overlaps 240.0.0.0/4 (reserved and broadcast); VIPs are unicast host addresses"]),
        (["192.168.1.0/24"], [
            "vip_pool[0]: '192.168.1.0/24' holds 192.168.1.9 (nodes[0].address); a VIP override could then claim it",
            "vip_pool[0]: '192.168.1.0/24' holds 192.168.1.11 (nodes[1].address); a VIP override could then claim it",
            "vip_pool[0]: '192.168.1.0/24' holds 192.168.1.4 (clusters[0].endpoint); a VIP override could then claim it",
            "vip_pool[0]: '192.168.1.0/24' holds 192.168.1.8 (clusters[1].endpoint); a VIP override could then claim it",
        ]),
        (["192.168.1.4/32"], ["vip_pool[0]: '192.168.1.4/32' holds 192.168.1.4 (clusters[0].endpoint); a VIP override could then claim it"]),
        (["192.168.1.32/27", "192.168.1.48/28"], ["vip_pool[1]: '192.168.1.48/28' overlaps vip_pool[0] (192.168.1.32/27)"]),
    ],
)
def test_vip_pool_refusals(example_text, tmp_path, pool, expected):
    data = yaml.safe_load(example_text())
    data["vip_pool"] = pool
    assert _errors(tmp_path, data) == [f"site.yaml: {line}" for line in expected]
