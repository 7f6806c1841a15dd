"""`apply`: every source and datasource shape, every refusal with its exact message, idempotence, secrets."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat

import pytest

from ha_ingress_proxy import cli, inventory, layout, render
from ha_ingress_proxy.plan import plan

from ..conftest import EXAMPLES
from .conftest import PASSWORD, NodeRoot

ID = layout.shown(layout.INSTANCE_DATA)
KCONF = layout.KEEPALIVED_CONF
HCFG = layout.HAPROXY_CFG


def meta(**keys):
    """NoCloud meta-data; the stats password is not here (NodeRoot put it in secrets.env, as user-data does)."""
    return {"instance-id": "iid-1", "local-hostname": "proxy", **keys}


# --------------------------------------------------------------------------- the site model


@pytest.mark.parametrize("mode", ["active-active", "active-passive"])
def test_shipped_site_model_passes_the_same_validation(mode):
    site = inventory.load(EXAMPLES / f"{mode}.yaml")
    data = json.loads(render.site_model(site).content)
    assert inventory.validate(data, "site.json") == site


# --------------------------------------------------------------------------- datasource shapes

SHAPES = {
    "nocloud": {"v1": {"cloud_name": "nocloud"}, "ds": {"meta_data": {"instance-id": "i", "ha_ingress_node": "proxy-2"}}},
    "vmware": {
        "v1": {"cloud_name": "vmware", "platform": "vmware"},
        "ds": {"meta_data": {"instance-id": "i", "local-hostname": "p2", "ha_ingress_node": "proxy-2"}},
    },
    "openstack": {
        "v1": {"cloud_name": "openstack"},
        "ds": {"meta_data": {"uuid": "u", "meta": {"ha_ingress_node": "proxy-2"}}},
    },
    "ec2": {
        "v1": {"cloud_name": "aws", "platform": "ec2"},
        "ds": {"meta_data": {"instance-id": "i-1", "tags": {"instance": {"Name": "p2", "ha_ingress_node": "proxy-2"}}}},
    },
    "gce": {
        "v1": {"cloud_name": "gce"},
        "ds": {"meta_data": {"instance": {"attributes": {"ha_ingress_node": "proxy-2"}}}},
    },
}
KEYPATH = {
    "nocloud": "ds.meta_data",
    "vmware": "ds.meta_data",
    "openstack": "ds.meta_data.meta",
    "ec2": "ds.meta_data.tags.instance",
    "gce": "ds.meta_data.instance.attributes",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_datasource_shape_names_the_node(node_root, shape):
    node_root.instance_data(data=SHAPES[shape])
    out = node_root.apply()
    assert out.ok, out.state
    st = node_root.state()
    assert (st["node"], st["role"], st["masters"]) == ("proxy-2", "backup", ["192.168.1.12"])
    assert st["where"] == f"{ID}: {KEYPATH[shape]}.ha_ingress_node"
    assert st["source"] == f"cloud-init metadata ({SHAPES[shape]['v1']['cloud_name']})"
    # the same model and templates as the build: byte-identical to the build's proxy-2 tree
    want = render.render(plan(node_root.site, "proxy-2"))
    for rel in (KCONF, HCFG):
        assert node_root.file(rel).read_bytes() == want[rel].content
        assert stat.S_IMODE(node_root.file(rel).stat().st_mode) == 0o644


def test_role_names_node_in_two_node_site(passive_root):
    passive_root.instance_data(meta(ha_ingress_role="backup"))
    assert passive_root.apply().ok
    st = passive_root.state()
    assert (st["node"], st["role"], st["masters"]) == ("proxy-2", "backup", [])
    assert "state BACKUP" in passive_root.file(KCONF).read_text() and "priority 190" in passive_root.file(KCONF).read_text()


def test_sensitive_instance_data_is_preferred_and_not_warned_about(node_root):
    node_root.instance_data(meta(ha_ingress_node="proxy-1"))
    node_root.instance_data(meta(ha_ingress_node="proxy-2"), sensitive=True, mode=0o600)
    out = node_root.apply()
    assert out.ok and out.warnings == []
    assert node_root.state()["where"] == "/run/cloud-init/instance-data-sensitive.json: ds.meta_data.ha_ingress_node"


HINT = "put it in /etc/ha-ingress-proxy/secrets.env (root-only, mode 0600; cloud-init user-data write_files can deliver it) instead"
SID = layout.shown(layout.INSTANCE_DATA_SENSITIVE)


def test_password_from_the_root_only_copy_is_used_when_the_public_copy_redacts_it(node_root):
    node_root.no_secrets()
    node_root.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_stats_password="redacted for non-root user"))
    node_root.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_stats_password=PASSWORD), sensitive=True)
    out = node_root.apply()
    assert out.ok, out.state
    assert node_root.state()["password_source"] == f"{SID}: ds.meta_data.ha_ingress_stats_password"
    assert node_root.file("etc/ha-ingress-proxy/secrets.env").read_text() == f"HAPROXY_STATS_PASSWORD={PASSWORD}\n"


@pytest.mark.parametrize(
    "setup, message",
    [
        pytest.param(
            lambda r: r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_stats_password=PASSWORD)),
            f"{ID}: ds.meta_data.ha_ingress_stats_password: the stats password is in {ID}, which every local user can read "
            f"(value not shown); {HINT}",
            id="world-readable-copy",
        ),
        pytest.param(
            lambda r: r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_stats_password=PASSWORD), mode=0o600),
            f"{ID}: ds.meta_data.ha_ingress_stats_password: the stats password is in {ID}, which every local user can read "
            f"(value not shown); {HINT}",
            id="public-copy-even-when-chmodded",
        ),
        pytest.param(
            lambda r: r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_stats_password=PASSWORD), sensitive=True, mode=0o644),
            f"{SID}: ds.meta_data.ha_ingress_stats_password: {SID} is mode 0644, owner uid 0: not root-only, so the stats "
            f"password in it is refused (value not shown); {HINT}",
            id="sensitive-copy-readable-by-all",
        ),
        pytest.param(
            lambda r: (
                r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_stats_password=PASSWORD)),
                r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_stats_password=PASSWORD), sensitive=True),
            ),
            f"{SID}: ds.meta_data.ha_ingress_stats_password: the stats password is also in {ID}: "
            f"ds.meta_data.ha_ingress_stats_password, which every local user can read (value not shown); {HINT}",
            id="sensitive-copy-but-public-copy-too",
        ),
        pytest.param(
            lambda r: (
                r.instance_data(meta(ha_ingress_node="proxy-1", note=f"pw is {PASSWORD}")),
                r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_stats_password=PASSWORD), sensitive=True),
            ),
            f"{SID}: ds.meta_data.ha_ingress_stats_password: the stats password also appears in {ID}, which every local "
            f"user can read (value not shown); {HINT}",
            id="public-copy-holds-it-elsewhere",
        ),
    ],
)
def test_password_from_metadata_others_can_read_is_refused(node_root, setup, message):
    """Issue 10 item 5: a warning was not enough; only the root-only copy counts, and only if the public one lacks it."""
    setup(node_root)
    out = node_root.apply()
    assert not out.ok
    assert out.state.reason == message
    assert not node_root.file(KCONF).exists()
    assert PASSWORD not in json.dumps(node_root.state())


# --------------------------------------------------------------------------- the other sources


def test_kernel_cmdline_role_node_and_vips(node_root):
    # the site's own VIPs, swapped: proxy-2 now masters 192.168.1.10 (without a vip_pool, only the site's VIPs)
    node_root.cmdline("BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro ha_ingress.node=proxy-2 ha_ingress.vips=192.168.1.12,192.168.1.10 quiet")
    assert node_root.apply().ok
    st = node_root.state()
    assert st["node"] == "proxy-2" and st["where"] == "/proc/cmdline: ha_ingress.node"
    assert st["vips"] == ["192.168.1.12", "192.168.1.10"] and st["vips_source"] == "/proc/cmdline: ha_ingress.vips"
    assert st["masters"] == ["192.168.1.10"]
    k = node_root.file(KCONF).read_text()
    # router ids stay with the position: VIP 0 (now .12) keeps 51, VIP 1 (now .10) keeps 61
    assert re.search(r"virtual_router_id 51\n(?:(?!vrrp_instance).*\n)*?\s+192\.168\.1\.12/32", k)
    assert re.search(r"virtual_router_id 61\n(?:(?!vrrp_instance).*\n)*?\s+192\.168\.1\.10/32", k)
    assert "bind 192.168.1.10:443" in node_root.file(HCFG).read_text()


def test_kernel_cmdline_overrides_metadata_and_says_so(node_root):
    node_root.cmdline("ro ha_ingress.role=master")
    node_root.instance_data(meta(ha_ingress_node="proxy-2"))
    assert node_root.apply().ok
    st = node_root.state()
    assert st["node"] == "proxy-1" and st["source"] == "kernel command line"
    assert st["overrides"] == [f"/proc/cmdline: ha_ingress.role (proxy-1) overrides {ID}: ds.meta_data.ha_ingress_node (proxy-2)"]


def test_local_node_file(node_root):
    node_root.node_file("ha_ingress_node: proxy-2\n")
    node_root.secrets(f"HAPROXY_STATS_PASSWORD={PASSWORD}\n")
    assert node_root.apply().ok
    assert node_root.state()["where"] == "/etc/ha-ingress-proxy/node.yaml: ha_ingress_node"


def test_address_match_when_no_source_names_the_node(node_root):
    node_root.instance_data(meta())
    node_root.addresses = [("lo", "127.0.0.1"), ("ens192", "192.168.1.11")]
    assert node_root.apply().ok
    st = node_root.state()
    assert (st["node"], st["source"], st["where"]) == ("proxy-2", "host addresses", "host addresses: 192.168.1.11 on ens192")


def test_address_agreeing_with_metadata_is_recorded(node_root):
    node_root.instance_data(meta(ha_ingress_node="proxy-2"))
    node_root.addresses = [("ens192", "192.168.1.11")]
    assert node_root.apply().ok
    assert node_root.state()["address_check"] == "192.168.1.11 on ens192 is proxy-2's address"


# --------------------------------------------------------------------------- refusals, exact messages

REFUSALS = [
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_node="proxy-9")),
        f"{ID}: ds.meta_data.ha_ingress_node: 'proxy-9' is not a node of site dc1-ingress (nodes: proxy-1, proxy-2)",
        id="unknown-node",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_role="primary")),
        f"{ID}: ds.meta_data.ha_ingress_role: 'primary' is not a role (roles: master, backup)",
        id="unknown-role",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_node="proxy-1\nvrrp_instance X {")),
        f"{ID}: ds.meta_data.ha_ingress_node: 'proxy-1\\nvrrp_instance X {{' contains a newline or another control character",
        id="newline-config-syntax",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_node="p" * 300)),
        f"{ID}: ds.meta_data.ha_ingress_node: value is 300 characters; at most 255 are accepted",
        id="oversize",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_node=["proxy-1"])),
        f"{ID}: ds.meta_data.ha_ingress_node: ['proxy-1'] is not a string",
        id="not-a-string",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_vips="192.168.1.10,192.168.1.300")),
        f"{ID}: ds.meta_data.ha_ingress_vips[1]: '192.168.1.300' is not an IPv4 address",
        id="vip-not-an-address",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_vips=["192.168.1.10", "192.168.1.11"])),
        f"{ID}: ds.meta_data.ha_ingress_vips[1]: '192.168.1.11' is also a node address (nodes[1].address)",
        id="vip-is-a-node-address",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_vips=["192.168.1.10", "192.168.1.10"])),
        f"{ID}: ds.meta_data.ha_ingress_vips[1]: '192.168.1.10' is used twice as a VIP (also at ds.meta_data.ha_ingress_vips[0])",
        id="vips-collide",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_vips=["192.168.1.10"])),
        f"{ID}: ds.meta_data.ha_ingress_vips: active-active takes one VIP per node: 2 nodes, 1 VIPs",
        id="vip-count-for-mode",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_role="master", ha_ingress_node="proxy-2")),
        f"{ID}: ds.meta_data.ha_ingress_role: 'master' means node proxy-1, but {ID}: ds.meta_data.ha_ingress_node is 'proxy-2'",
        id="role-and-node-disagree",
    ),
    pytest.param(
        lambda r: r.instance_data(data={"ds": {"meta_data": {"ha_ingress_node": "proxy-1", "meta": {"ha_ingress_node": "proxy-2"}}}}),
        f"{ID}: ds.meta_data.meta.ha_ingress_node: 'proxy-2' disagrees with {ID}: ds.meta_data.ha_ingress_node: 'proxy-1'",
        id="two-shapes-disagree",
    ),
    pytest.param(
        lambda r: r.instance_data(data={"ds": {"meta_data": {"tags": {"instance": {"ha-ingress-role": "master"}}}}}),
        f"{ID}: ds.meta_data.tags.instance.ha-ingress-role: unknown key (known: ha_ingress_node, ha_ingress_role, "
        "ha_ingress_stats_password, ha_ingress_vips); did you mean ha_ingress_role?",
        id="dashed-ec2-tag",
    ),
    pytest.param(
        lambda r: r.instance_data(meta(ha_ingress_nodes="proxy-1")),
        f"{ID}: ds.meta_data.ha_ingress_nodes: unknown key (known: ha_ingress_node, ha_ingress_role, ha_ingress_stats_password, ha_ingress_vips)",
        id="unknown-metadata-key",
    ),
    pytest.param(
        lambda r: (r.instance_data(meta(ha_ingress_node="proxy-1")), r.node_file("ha_ingress_node: proxy-2\n")),
        f"/etc/ha-ingress-proxy/node.yaml: ha_ingress_node: node proxy-2 disagrees with {ID}: ds.meta_data.ha_ingress_node: proxy-1; "
        "only the kernel command line overrides other sources",
        id="metadata-vs-node-file",
    ),
    pytest.param(
        lambda r: (r.instance_data(meta(ha_ingress_node="proxy-2")), setattr(r, "addresses", [("ens192", "192.168.1.9")])),
        f"{ID}: ds.meta_data.ha_ingress_node: 'proxy-2' names node proxy-2, but this host has proxy-1's address 192.168.1.9 (on ens192); "
        "refusing to act as another node",
        id="metadata-vs-address",
    ),
    pytest.param(
        lambda r: (r.cmdline("ha_ingress.node=proxy-2"), r.instance_data(meta()), setattr(r, "addresses", [("ens192", "192.168.1.9")])),
        "/proc/cmdline: ha_ingress.node: 'proxy-2' names node proxy-2, but this host has proxy-1's address 192.168.1.9 (on ens192); "
        "refusing to act as another node",
        id="cmdline-does-not-override-addresses",
    ),
    pytest.param(
        lambda r: (r.instance_data(meta()), setattr(r, "addresses", [("ens192", "192.168.1.9"), ("ens224", "192.168.1.11")])),
        "host addresses: this host holds the addresses of several nodes: proxy-1 (192.168.1.9 on ens192), proxy-2 (192.168.1.11 on ens224)",
        id="two-node-addresses",
    ),
    pytest.param(
        lambda r: r.instance_data(meta()),
        "no role: no ha_ingress.role/ha_ingress.node on /proc/cmdline, no ha_ingress_role/ha_ingress_node in cloud-init metadata, "
        "no /etc/ha-ingress-proxy/node.yaml, and none of this host's addresses is a node address of site dc1-ingress",
        id="nothing-found",
    ),
    pytest.param(
        lambda r: r.cmdline("ro ha_ingress.role=master ha_ingress.role=backup"),
        "/proc/cmdline: ha_ingress.role: 'backup' disagrees with /proc/cmdline: ha_ingress.role: 'master'",
        id="cmdline-key-twice",
    ),
    pytest.param(
        lambda r: r.cmdline("ro ha_ingress.rol=master"),
        "/proc/cmdline: ha_ingress.rol: unknown key (known: ha_ingress.node, ha_ingress.role, ha_ingress.vips, each as key=value)",
        id="cmdline-unknown-key",
    ),
    pytest.param(
        lambda r: r.cmdline("ro ha_ingress.role=master ha_ingress.stats_password=hunter2hunter2"),
        "/proc/cmdline: ha_ingress.stats_password: the kernel command line is readable by every local user; "
        "put it in /etc/ha-ingress-proxy/secrets.env (root-only, mode 0600; cloud-init user-data write_files can deliver it)",
        id="password-on-cmdline",
    ),
    pytest.param(
        lambda r: (r.instance_data({"ha_ingress_node": "proxy-1"}), r.no_secrets()),
        "no stats password: put HAPROXY_STATS_PASSWORD=... in /etc/ha-ingress-proxy/secrets.env (root-only, mode 0600; "
        "cloud-init user-data write_files can deliver it); haproxy would accept an empty one",
        id="no-password",
    ),
    pytest.param(
        lambda r: r.instance_data({"ha_ingress_node": "proxy-1", "ha_ingress_stats_password": "short pw"}, sensitive=True),
        "/run/cloud-init/instance-data-sensitive.json: ds.meta_data.ha_ingress_stats_password: the stats password must be 12-128 printable ASCII characters "
        "without whitespace, quotes or backslashes (got 8 characters; value not shown)",
        id="bad-password",
    ),
    pytest.param(
        lambda r: (r.instance_data({"ha_ingress_node": "proxy-1"}), r.secrets('HAPROXY_STATS_PASSWORD="quoted-password"\n')),
        "/etc/ha-ingress-proxy/secrets.env: line 1: HAPROXY_STATS_PASSWORD: the stats password must be 12-128 printable ASCII "
        "characters without whitespace, quotes or backslashes (got 17 characters; value not shown)",
        id="bad-password-in-secrets-env",
    ),
    pytest.param(
        lambda r: (r.instance_data(meta()), r.node_file("ha_ingress_node: proxy-1\n", mode=0o644)),
        "/etc/ha-ingress-proxy/node.yaml: mode 0644 lets group or others read or write it; it must be root-only (chmod 600)",
        id="node-file-readable",
    ),
    pytest.param(
        lambda r: (r.instance_data(meta()), r.node_file("ha_ingress_node: proxy-1\n", mode=0o620)),
        "/etc/ha-ingress-proxy/node.yaml: mode 0620 lets group or others read or write it; it must be root-only (chmod 600)",
        id="node-file-group-writable",
    ),
    pytest.param(
        lambda r: (r.instance_data(meta()), r.node_file("ha_ingress_node: proxy-1\n", uid=65534)),
        "/etc/ha-ingress-proxy/node.yaml: owned by uid 65534, not root; it must be root-owned (chown root:root)",
        id="node-file-not-root-owned",
    ),
    pytest.param(
        lambda r: (r.instance_data(meta()), r.node_file("ha_ingress_node: proxy-1\nrole: master\n")),
        "/etc/ha-ingress-proxy/node.yaml: role: unknown key (known: ha_ingress_node, ha_ingress_role, ha_ingress_vips)",
        id="node-file-unknown-key",
    ),
    pytest.param(
        lambda r: (r.instance_data(meta()), r.node_file("ha_ingress_node: proxy-1\nha_ingress_node: proxy-2\n")),
        "/etc/ha-ingress-proxy/node.yaml: line 2 column 1: duplicate key 'ha_ingress_node' (first at line 1)",
        id="node-file-duplicate-key",
    ),
    pytest.param(
        lambda r: (r.file("run/cloud-init").mkdir(parents=True), r.file(ID[1:]).write_text("{not json")),
        f"{ID}: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        id="instance-data-not-json",
    ),
    pytest.param(
        lambda r: r.file("usr/share/ha-ingress-proxy/site.json").unlink(),
        "/usr/share/ha-ingress-proxy/site.json: missing; the ha-ingress-proxy package ships it (is the package installed?)",
        id="no-site-model",
    ),
]


@pytest.mark.parametrize("setup, message", REFUSALS)
def test_refusal(node_root, setup, message, capsys):
    setup(node_root)
    out = node_root.apply()
    assert not out.ok
    assert out.state.reason == message
    st = node_root.state()
    assert (st["ok"], st["result"], st["reason"], st["node"], st["vips"]) == (False, "refused", message, None, [])
    assert not node_root.file(KCONF).exists()
    assert PASSWORD not in json.dumps(st) and "hunter2" not in json.dumps(st)


def test_refusal_through_the_cli_is_one_line_and_exit_1(node_root, capsys, tmp_path):
    node_root.instance_data(meta(ha_ingress_node="proxy-9"))
    ip = tmp_path / "ip.json"
    ip.write_text("[]")
    code = cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err == [
        f"ha-ingress-proxy: refused: {ID}: ds.meta_data.ha_ingress_node: 'proxy-9' is not a node of site dc1-ingress (nodes: proxy-1, proxy-2)"
    ]


def test_role_needs_a_two_node_site(tmp_path):
    base = inventory.load(EXAMPLES / "active-passive.yaml")
    three = dataclasses.replace(base, nodes=base.nodes + (inventory.Node("proxy-3", "192.168.1.13", "ens192"),))
    r = NodeRoot(tmp_path / "root", site=three)
    r.file("usr/share/ha-ingress-proxy/site.json").write_bytes(render.site_model(three).content)
    r.instance_data(meta(ha_ingress_role="master"))
    out = r.apply()
    assert out.state.reason == (
        f"{ID}: ds.meta_data.ha_ingress_role: 'master': roles name the nodes of two-node sites; "
        "site dc1-ingress has 3 nodes, so name the node with ha_ingress_node"
    )
    r.instance_data(meta(ha_ingress_node="proxy-3"))
    assert r.apply().ok and r.state()["role"] is None and "priority 180" in r.file(KCONF).read_text()


def test_refusal_after_success_removes_keepalived_conf(node_root):
    node_root.instance_data(meta(ha_ingress_node="proxy-1"))
    assert node_root.apply().ok and node_root.file(KCONF).stat().st_size > 0
    node_root.instance_data(meta(ha_ingress_node="proxy-9"))
    out = node_root.apply()
    assert not out.ok and ("/etc/ha-ingress-proxy/keepalived.conf", "removed") in out.changes
    assert not node_root.file(KCONF).exists()


# --------------------------------------------------------------------------- idempotence, role change, secrets


def _mtimes(root: NodeRoot) -> dict[str, int]:
    rels = [KCONF, HCFG, "etc/ha-ingress-proxy/secrets.env", "run/ha-ingress-proxy/state.json"]
    return {rel: root.file(rel).stat().st_mtime_ns for rel in rels}


def test_second_apply_changes_nothing(node_root, capsys, tmp_path):
    node_root.instance_data(meta(ha_ingress_node="proxy-2"))
    ip = tmp_path / "ip.json"
    ip.write_text(json.dumps([{"ifname": "ens192", "addr_info": [{"family": "inet", "local": "192.168.1.11", "prefixlen": 24}]}]))
    argv = ["apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert f"/{KCONF}: written" in first and "applied: node proxy-2 (backup)" in first
    before = _mtimes(node_root)
    state = node_root.file("run/ha-ingress-proxy/state.json").read_bytes()
    assert cli.main(argv) == 0
    second = capsys.readouterr().out.splitlines()
    assert second[:4] == [
        "/etc/ha-ingress-proxy/firewall.nft: unchanged",
        "/etc/ha-ingress-proxy/haproxy.cfg: unchanged",
        "/etc/ha-ingress-proxy/secrets.env: unchanged",
        "/etc/ha-ingress-proxy/keepalived.conf: unchanged",
    ]
    assert second[4].startswith("unchanged: node proxy-2 (backup) of site dc1-ingress")
    assert _mtimes(node_root) == before
    assert node_root.file("run/ha-ingress-proxy/state.json").read_bytes() == state


def test_role_change_with_changed_metadata(node_root):
    node_root.instance_data(meta(ha_ingress_role="master"))
    assert node_root.apply().ok
    k1 = node_root.file(KCONF).read_bytes()
    node_root.instance_data(meta(ha_ingress_role="backup"))
    out = node_root.apply()
    assert out.ok and ("/etc/ha-ingress-proxy/keepalived.conf", "written") in out.changes
    assert node_root.state()["node"] == "proxy-2"
    assert node_root.file(KCONF).read_bytes() != k1
    assert node_root.file(KCONF).read_bytes() == render.render(plan(node_root.site, "proxy-2"))[KCONF].content


def test_secrets_env_is_root_only_and_holds_only_the_password(node_root):
    node_root.no_secrets()
    node_root.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_stats_password=PASSWORD), sensitive=True)
    assert node_root.apply().ok
    path = node_root.file("etc/ha-ingress-proxy/secrets.env")
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert path.read_text() == f"HAPROXY_STATS_PASSWORD={PASSWORD}\n"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_existing_secrets_env_is_used(node_root):
    node_root.instance_data({"ha_ingress_node": "proxy-1"})
    node_root.secrets(f"# from the admin\nHAPROXY_STATS_PASSWORD={PASSWORD}\n")
    out = node_root.apply()
    assert out.ok and ("/etc/ha-ingress-proxy/secrets.env", "written") in out.changes  # the comment goes
    assert node_root.state()["password_source"] == "/etc/ha-ingress-proxy/secrets.env"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=lambda m: f"{m:04o}")
def test_secrets_env_others_can_read_is_refused_not_chmodded(node_root, mode):
    """Issue 10 item 12: a readable secrets.env may already have leaked; it is refused, its mode left alone."""
    node_root.instance_data({"ha_ingress_node": "proxy-1"})
    path = node_root.secrets(f"HAPROXY_STATS_PASSWORD={PASSWORD}\n", mode=mode)
    out = node_root.apply()
    assert not out.ok
    assert out.state.reason == (
        f"/etc/ha-ingress-proxy/secrets.env: mode {mode:04o} lets group or others read the stats password; make it "
        "root-only (chmod 600 /etc/ha-ingress-proxy/secrets.env) and, since it may have been read, change the password"
    )
    assert stat.S_IMODE(path.stat().st_mode) == mode and not node_root.file(KCONF).exists()


def test_two_shapes_disagreeing_on_the_password_name_the_places_not_the_values(node_root):
    """Issue 10 item 1: the refusal used to print both passwords into the journal and state.json."""
    other = "another-password-99"
    node_root.instance_data(
        data={"ds": {"meta_data": {"ha_ingress_stats_password": PASSWORD, "meta": {"ha_ingress_stats_password": other}}}},
        sensitive=True,
    )
    out = node_root.apply()
    assert out.state.reason == (
        f"{SID}: ds.meta_data.meta.ha_ingress_stats_password: disagrees with {SID}: ds.meta_data.ha_ingress_stats_password "
        "(two different stats passwords; values not shown)"
    )
    text = node_root.file("run/ha-ingress-proxy/state.json").read_text()
    assert PASSWORD not in text and other not in text


def test_password_never_reaches_output(node_root, capsys, tmp_path):
    node_root.instance_data(meta(ha_ingress_node="proxy-1"))
    ip = tmp_path / "ip.json"
    ip.write_text("[]")
    cli.main(["apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)])
    cli.main(["status", "--json", "--root", str(node_root.path), "--ip-addr-json", str(ip)])
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    for p in (node_root.path / "run/ha-ingress-proxy").iterdir():
        assert PASSWORD not in p.read_text()
    assert os.stat(node_root.file("etc/ha-ingress-proxy/secrets.env")).st_mode & 0o077 == 0


# --------------------------------------------------------------------------- VIP overrides stay inside what the site owns


def _pool_root(tmp_path, pool):
    site = dataclasses.replace(inventory.load(EXAMPLES / "active-active.yaml"), vip_pool=pool)
    r = NodeRoot(tmp_path / "root", site=site)
    r.file("usr/share/ha-ingress-proxy/site.json").write_bytes(render.site_model(site).content)
    return r


def test_vip_override_inside_the_vip_pool_is_used(tmp_path):
    r = _pool_root(tmp_path, ("192.168.1.32/28",))
    r.instance_data(data={"ds": {"meta_data": {"tags": {"instance": {"ha_ingress_node": "proxy-1", "ha_ingress_vips": "192.168.1.33,192.168.1.12"}}}}})
    out = r.apply()
    assert out.ok, out.state
    assert r.state()["vips"] == ["192.168.1.33", "192.168.1.12"]
    assert "192.168.1.33/32" in r.file(KCONF).read_text()


@pytest.mark.parametrize(
    "pool, message",
    [
        pytest.param(
            (),
            f"{ID}: ds.meta_data.ha_ingress_vips[0]: '192.168.1.1' is not a VIP of site dc1-ingress (192.168.1.10, 192.168.1.12), "
            "and the inventory declares no vip_pool; a VIP override stays inside what the site owns",
            id="no-pool",
        ),
        pytest.param(
            ("192.168.1.32/28", "10.9.0.0/24"),
            f"{ID}: ds.meta_data.ha_ingress_vips[0]: '192.168.1.1' is neither a VIP of site dc1-ingress (192.168.1.10, 192.168.1.12) "
            "nor inside its vip_pool (192.168.1.32/28, 10.9.0.0/24); a VIP override stays inside what the site owns",
            id="outside-the-pool",
        ),
    ],
)
def test_vip_override_the_site_does_not_own_is_refused(tmp_path, pool, message):
    """Issue 10 item 2: an instance tag must not make a node gratuitous-ARP the LAN gateway."""
    r = _pool_root(tmp_path, pool)
    r.instance_data(meta(ha_ingress_node="proxy-1", ha_ingress_vips=["192.168.1.1", "192.168.1.12"]))
    out = r.apply()
    assert out.state.reason == message
    assert not r.file(KCONF).exists()
