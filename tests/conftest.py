"""Shared fixtures: paths, the example inventories, a root check for real-binary tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ha_ingress_proxy.inventory import MODES, VRRP_MODES  # the examples are named after the modes

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def example_text():
    def read(mode: str = "active-active") -> str:
        return (EXAMPLES / f"{mode}.yaml").read_text()

    return read


def need_root_and(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (they use mount and network namespaces); run them as root")
    missing = [t for t in tools if not shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
    if missing:
        pytest.fail(f"missing tools {missing}: run ./invokew test, which installs them")
