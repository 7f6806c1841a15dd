"""Fixtures for the image tests: the src/ layout on sys.path, the `image` marker, an offline netns."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from ha_ingress_lab.vm import NetNS  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image: slow end-to-end image build + bake + boot (minutes, needs root)")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, loop devices)")


@pytest.fixture(scope="session")
def offline_ns() -> Iterator[NetNS]:
    """A network namespace with only loopback up: whatever runs in it cannot leave the machine."""
    need_root()
    ns = NetNS(name=f"hip-off-{uuid.uuid4().hex[:8]}")
    from ha_ingress_proxy import subproc

    subproc.run(["ip", "netns", "add", ns.name])
    try:
        ns.ip("link", "set", "lo", "up")
        yield ns
    finally:
        ns.delete()
