"""The examples on other Debian releases' haproxy and keepalived (debootstrap'd roots).

Debian 11: haproxy 2.2, keepalived 2.1.5 (EL8's keepalived). Debian 13: haproxy
3.0 (EL10's generation), keepalived 2.3.3. With the host's Debian 12 they
bracket the EL8..EL10 targets. The roots are cached under build/roots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ha_ingress_build import lint, release_roots
from ha_ingress_proxy import inventory, render

from .conftest import EXAMPLES, MODES, ROOT, need_root_and

pytestmark = pytest.mark.targets


@pytest.fixture(scope="module", params=sorted(release_roots.RELEASES))
def release(request) -> tuple[str, Path]:
    need_root_and("debootstrap", "unshare", "chroot")
    return request.param, release_roots.ensure_root(request.param, ROOT / "build" / "roots")


@pytest.mark.parametrize("mode", (*MODES, "ingress-nginx"))
def test_examples_lint_clean_on_release(release, mode, tmp_path):
    label, root = release
    render.write_site(inventory.load(EXAMPLES / f"{mode}.yaml"), tmp_path)
    findings = []
    for tree in lint.node_dirs(tmp_path):
        findings += lint.lint_node(tree, root, label)
    assert [f.line() for f in findings] == []


def test_the_release_binaries_are_the_ones_checked(release, tmp_path):
    """nbproc is fatal since haproxy 2.5: Debian 13's 3.0 must refuse it, Debian 11's 2.2 not."""
    label, root = release
    version = release_roots.versions(root)["haproxy"]
    render.write_site(inventory.load(EXAMPLES / "active-passive.yaml"), tmp_path)
    tree = tmp_path / "nodes" / "proxy-1"
    cfg = tree / "etc/ha-ingress-proxy/haproxy.cfg"
    cfg.write_text(cfg.read_text().replace("global\n", "global\n    nbproc 1\n", 1))
    checks = [f.check for f in lint.lint_node(tree, root, label)]
    if version.startswith(("2.2", "2.4")):
        assert checks == [], version
    else:
        assert checks == ["haproxy -c"], version


@pytest.mark.parametrize("transport", ("unix", "ring"))
def test_log_transports_lint_clean_on_release(release, transport, tmp_path):
    """haproxy.log_transport unix and ring (a `ring` section, `log ring@`) pass haproxy -c on
    Debian 11's 2.2 (the oldest haproxy with rings) and Debian 13's 3.0."""
    from dataclasses import replace

    label, root = release
    site = inventory.load(EXAMPLES / "active-active.yaml")
    render.write_site(replace(site, haproxy=replace(site.haproxy, log_transport=transport)), tmp_path)
    findings = []
    for tree in lint.node_dirs(tmp_path):
        assert ("ring@hip_log" in (tree / "etc/ha-ingress-proxy/haproxy.cfg").read_text()) == (transport == "ring")
        findings += lint.lint_node(tree, root, label)
    assert [f.line() for f in findings] == []
