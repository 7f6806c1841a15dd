"""Golden files: the rendered example trees, byte for byte. UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ha_ingress_proxy import inventory, render

from .conftest import EXAMPLES, MODES

GOLDEN = Path(__file__).parent / "golden"


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("mode", MODES)
def test_rendered_tree_matches_golden(mode, tmp_path):
    site = inventory.load(EXAMPLES / f"{mode}.yaml")
    render.write_site(site, tmp_path)
    got = tree_files(tmp_path / "nodes")
    golden = GOLDEN / mode
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(golden, ignore_errors=True)
        shutil.copytree(tmp_path / "nodes", golden)
    want = tree_files(golden)
    assert sorted(got) == sorted(want)
    for rel in sorted(want):
        assert got[rel].decode() == want[rel].decode(), f"{mode}/{rel} differs from tests/golden (UPDATE_GOLDEN=1 to accept)"


@pytest.mark.parametrize("mode", MODES)
def test_render_is_byte_stable_and_modes_recorded(mode, tmp_path):
    site = inventory.load(EXAMPLES / f"{mode}.yaml")
    render.write_site(site, tmp_path / "a")
    render.write_site(site, tmp_path / "b")
    assert tree_files(tmp_path / "a") == tree_files(tmp_path / "b")
    manifest = json.loads((tmp_path / "a/nodes/proxy-1.manifest.json").read_text())
    assert manifest["usr/libexec/keepalived/ha-ingress-proxy-check-haproxy"] == "0755"
    check = tmp_path / "a/nodes/proxy-1/usr/libexec/keepalived/ha-ingress-proxy-check-haproxy"
    assert check.stat().st_mode & 0o777 == 0o755
    assert all(v in ("0644", "0755") for v in manifest.values())


def test_seed_defects_are_fixed(tmp_path):
    site = inventory.load(EXAMPLES / "active-active.yaml")
    trees = render.render_site(site)
    text = {node: {rel: f.content.decode() for rel, f in tree.items()} for node, tree in trees.items()}
    p1, p2 = text["proxy-1"], text["proxy-2"]
    # both nodes agree which VIP each instance carries (the seed's active-active swapped them)
    for conf in (p1, p2):
        k = conf["etc/ha-ingress-proxy/keepalived.conf"]
        assert "virtual_router_id 51" in k.split("vrrp_instance VI_51")[1].split("}")[0]
        assert "192.168.1.10/32" in k.split("vrrp_instance VI_51")[1].split("vrrp_instance")[0]
        assert "192.168.1.12/32" in k.split("vrrp_instance VI_61")[1]
        assert "auth_pass" not in k and "auth_type" not in k and "version 3" in k
        assert "systemctl" not in k
    hcfg = p1["etc/ha-ingress-proxy/haproxy.cfg"]
    assert "nbproc" not in hcfg and "cookie" not in hcfg and "admin:admin" not in hcfg and "0.0.0.0" not in hcfg
    https = hcfg.split("listen https")[1].split("listen stats")[0]
    assert "mode tcp" in https and "forwardfor" not in https and "http-server-close" not in hcfg
    # the stats page: loopback by default (issue 10), never the seed's open 0.0.0.0
    assert "bind 127.0.0.1:8888\n" in hcfg and "bind 127.0.0.1:8888\n" in p2["etc/ha-ingress-proxy/haproxy.cfg"]
    sysctl = p1["usr/lib/sysctl.d/60-ha-ingress-proxy.conf"]
    assert "net.ipv4.tcp_tw_recycle" not in sysctl and "net.ipv4.ip_nonlocal_bind = 1" in sysctl
    rsyslog = p1["etc/rsyslog.d/49-ha-ingress-proxy.conf"]
    assert 'address="127.0.0.1"' in rsyslog and "UDPServerRun" not in rsyslog
    # the check script path keepalived runs is the file we ship, under /usr/libexec/keepalived
    script = "usr/libexec/keepalived/ha-ingress-proxy-check-haproxy"
    assert f'script "/{script}"' in p1["etc/ha-ingress-proxy/keepalived.conf"] and script in p1
