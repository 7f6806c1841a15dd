"""mode: bgp: the inventory's strict checks, the plan's FRR view, and FRR's own parser on the rendered frr.conf."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml

from ha_ingress_proxy import inventory, layout, render
from ha_ingress_proxy.plan import plan
from ha_ingress_proxy.subproc import run

from ..conftest import EXAMPLES

BASE = yaml.safe_load((EXAMPLES / "bgp.yaml").read_text())


def problems(change) -> list[str]:
    data = copy.deepcopy(BASE)
    change(data)
    with pytest.raises(inventory.InventoryError) as exc:
        inventory.validate(data, "site.yaml")
    return exc.value.lines


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["bgp"].pop("asn"), "site.yaml: bgp.asn: required key is missing (mode: bgp)"),
        (lambda d: d["bgp"].update(asn=23456), "site.yaml: bgp.asn: 23456 is not an AS number (1-4294967294, not 23456 AS_TRANS)"),
        (lambda d: d["bgp"]["peers"][0].update(asn=0), "site.yaml: bgp.peers[0].asn: 0 is not an AS number (1-4294967294, not 23456 AS_TRANS)"),
        (lambda d: d["bgp"]["peers"][1].update(address="192.168.1.1"),
         "site.yaml: bgp.peers[1].address: '192.168.1.1' is used twice as a peer address (also at bgp.peers[0].address)"),
        (lambda d: d["bgp"]["peers"][0].update(address="192.168.1.9"),
         "site.yaml: bgp.peers[0].address: '192.168.1.9' is an address of the proxy tier itself"),
        (lambda d: d["bgp"].update(communities=["65010:70000"]),
         "site.yaml: bgp.communities: '65010:70000' is not a BGP community ASN:VALUE, each 0-65535"),
        (lambda d: d["bgp"].update(communities=[3900400100]),
         "site.yaml: bgp.communities: 3900400100 is not a BGP community ASN:VALUE, each 0-65535 (quote it: YAML reads 65010:100 unquoted as a number)"),
        (lambda d: d["bgp"].update(bfd_interval_ms=10), "site.yaml: bgp.bfd_interval_ms: 10 is not an integer in 50-10000"),
        (lambda d: d["nodes"][1].update(router_id="192.168.1.9"),
         "site.yaml: nodes[1].router_id: '192.168.1.9' is used twice as a router_id (also at nodes[0].router_id)"),
        (lambda d: d["bgp"]["peers"][0].update(secret="x"), "site.yaml: bgp.peers[0].secret: unknown key (known: address, asn, password)"),
    ],
)
def test_bgp_refusals(change, expected):
    assert problems(change) == [expected]


def test_no_peers_for_a_node_is_refused_per_node():
    def change(d):
        d["bgp"].pop("peers")
        d["nodes"][0]["bgp_peers"] = [{"address": "10.1.0.1", "asn": 65000}]
    assert problems(change) == ["site.yaml: nodes[1]: has no BGP peers: set bgp.peers (every node) or nodes[].bgp_peers (this one)"]


def test_bgp_keys_outside_bgp_mode_are_refused():
    def change(d):
        d["mode"] = "active-active"
        d["nodes"][1].pop("router_id")
    assert problems(change) == ["site.yaml: bgp: is for mode: bgp only (mode is active-active)"]


def test_plan_view_router_id_peers_and_no_keepalived():
    data = copy.deepcopy(BASE)
    data["nodes"][0]["bgp_peers"] = [{"address": "10.9.0.1", "asn": 65001, "password": True}]
    site = inventory.validate(data, "site.yaml")
    one, two = plan(site, "proxy-1").bgp, plan(site, "proxy-2").bgp
    assert one.router_id == "192.168.1.9" and two.router_id == "10.255.0.2"  # default: the node address
    assert [(p.address, p.asn, p.password_env) for p in one.peers] == [("10.9.0.1", 65001, "BGP_PASSWORD_10_9_0_1")]
    assert [p.address for p in two.peers] == ["192.168.1.1", "192.168.1.2"]
    assert one.vips == ("203.0.113.10/32", "203.0.113.11/32")
    assert (one.bfd_interval_ms, one.bfd_multiplier) == (300, 3)
    tree = render.render_node(site, "proxy-1")
    assert layout.KEEPALIVED_CONF not in tree and layout.FRR_CONF in tree
    assert plan(site, "proxy-1").instances == ()
    # the round trip the agent makes through site.json keeps the site as it was
    assert inventory.validate(json.loads(json.dumps(inventory.to_dict(site))), "site.json") == site


@pytest.mark.skipif(not shutil.which("vtysh"), reason="needs FRR's vtysh (the frr package; invokew installs it)")
def test_rendered_frr_conf_passes_frrs_own_parser_and_a_broken_one_does_not(tmp_path):
    site = inventory.load(EXAMPLES / "bgp.yaml")
    for node in site.nodes:
        conf = tmp_path / f"{node.name}.conf"
        conf.write_bytes(render.render_node(site, node.name)[layout.FRR_CONF].content)
        run(["vtysh", "--dryrun", "-f", conf])
        text = conf.read_text()
        assert "network " not in text  # announcing is the bgp-gate's job, never the file's
        assert f"bgp router-id {node.router_id}" in text and "bfd profile hip" in text
    bad = tmp_path / "bad.conf"
    bad.write_text(text.replace("remote-as", "remote-asn"))
    assert run(["vtysh", "--dryrun", "-f", bad], check=False).returncode != 0
