"""Provisioning scripts: shellcheck-clean, `#!/bin/sh -eux`, one job each."""

from __future__ import annotations

from pathlib import Path

import pytest

from ha_ingress_proxy import subproc

PROVISION = Path(__file__).resolve().parents[2] / "image" / "provision"
SCRIPTS = sorted(PROVISION.glob("*.sh"))
BUILD_HCL = (Path(__file__).resolve().parents[2] / "packer" / "build.pkr.hcl").read_text()


def test_the_four_jobs_exist() -> None:
    assert {p.name for p in SCRIPTS} == {"install-package.sh", "enable-units.sh", "write-manifest.sh", "seal.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    subproc.require_tool("shellcheck", "shellcheck")
    subproc.run(["shellcheck", "--shell=sh", "--severity=style", script])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shebang_and_mode(script: Path) -> None:
    assert script.read_text().splitlines()[0] == "#!/bin/sh -eux"
    assert script.stat().st_mode & 0o111


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_is_used_by_the_build(script: Path) -> None:
    assert f"image/provision/{script.name}" in BUILD_HCL


def test_seal_runs_last() -> None:
    used = [s for s in ("install-package", "enable-units", "write-manifest", "seal") if s in BUILD_HCL]
    positions = [BUILD_HCL.index(f"image/provision/{s}.sh") for s in used]
    assert positions == sorted(positions) and used[-1] == "seal"
