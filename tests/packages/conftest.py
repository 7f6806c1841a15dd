"""Fixtures for the package tests: the example site's RPM and .deb, built once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ha_ingress_build import payload, pipeline
from ha_ingress_proxy.errors import UserError

from ..conftest import EXAMPLES, ROOT


@dataclass(frozen=True)
class Built:
    out: Path
    rpm: Path
    deb: Path
    payload: payload.Payload


def build(out: Path) -> Built:
    try:
        # unsigned: these tests look at contents and reproducibility (a signature carries its
        # time); test_signing.py signs with a throwaway key and verifies
        rpm = pipeline.build_rpm(EXAMPLES / "active-active.yaml", out, unsigned=True)
        deb = pipeline.build_deb(EXAMPLES / "active-active.yaml", out)
    except UserError as exc:  # show the tool's words, not a traceback into run()
        pytest.fail("\n".join(exc.lines), pytrace=False)
    return Built(out, rpm.path, deb.path, payload.collect(out / "nodes"))


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("pkg-a"))


@pytest.fixture(scope="session")
def rebuilt(tmp_path_factory) -> Built:
    """The same commit built again, elsewhere: must give the same bytes."""
    return build(tmp_path_factory.mktemp("pkg-b"))


@pytest.fixture(scope="session")
def roots_cache() -> Path:
    return ROOT / "build" / "roots"
