"""Fixtures for the lab tests: real daemons in network namespaces (root only).

Every test gets fresh labs from `make_lab`; whatever happens in the test, the
fixture brings them down and checks that no lab namespace is left.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ha_ingress_lab import netns_lab as L
from ha_ingress_proxy import inventory

from ..conftest import EXAMPLES, VRRP_MODES as MODES, ROOT, need_root_and  # noqa: F401 - ROOT: test_lifecycle imports it from here; the netns lab runs VRRP, bgp has its own

TOOLS = ("ip", "haproxy", "keepalived", "rsyslogd", "nsenter", "unshare", "nft", "curl", "ss", "sysctl", "nginx", "openssl")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_ready():
    need_root_and(*TOOLS)  # like the other real-binary tests: fail, never skip, when not set up


def load(mode: str) -> inventory.Site:
    return inventory.load(EXAMPLES / f"{mode}.yaml")


@pytest.fixture(params=MODES)
def site(request):
    return load(request.param)


@pytest.fixture
def make_lab(lab_ready, tmp_path):
    labs: list[L.Lab] = []

    def make(site: inventory.Site, **kwargs) -> L.Lab:
        lab = L.Lab(site, tmp_path / f"lab{len(labs)}", **kwargs)
        labs.append(lab)
        lab.up()
        return lab

    yield make
    for lab in labs:
        lab.down()
    left = [ns for ns in L.netns_list() if ns.startswith(L.PREFIX + "-")]
    assert not left, f"lab namespaces left behind: {left}"
