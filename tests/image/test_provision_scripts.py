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


def test_the_bake_seed_plants_a_canary_and_asks_for_guestinfo_cleanup(tmp_path: Path) -> None:
    """The build VM's seed: the canary where a real secret would land; VMware told to drop the seed."""
    import yaml

    from ha_ingress_build.bake import write_bake_seed

    canary = write_bake_seed(tmp_path, "ssh-ed25519 AAAA test", "bake-1")
    user = yaml.safe_load((tmp_path / "user-data").read_text())
    [secret] = user["write_files"]
    assert secret["path"] == "/etc/ha-ingress-proxy/secrets.env" and secret["permissions"] == "0600"
    assert secret["content"] == f"HAPROXY_STATS_PASSWORD={canary}\n" and len(canary) >= 24
    meta = yaml.safe_load((tmp_path / "meta-data").read_text())
    assert meta["cleanup-guestinfo"] == ["userdata", "vendordata"] and meta["instance-id"] == "bake-1"
    assert write_bake_seed(tmp_path, "ssh-ed25519 AAAA test", "bake-2") != canary  # fresh per bake


def test_seal_removes_the_build_secrets_and_clears_guestinfo() -> None:
    """What tests/image/test_image_secrets.py proves on the baked image, kept in seal.sh. The VMware
    branch cannot run here (no VMware guest): its commands are checked as text."""
    seal = (PROVISION / "seal.sh").read_text()
    for line in ("rm -f /etc/ha-ingress-proxy/secrets.env", "systemctl stop systemd-random-seed.service",
                 "rm -f /var/lib/systemd/random-seed", 'vmware-rpctool "info-set guestinfo.$key ---"',
                 "for key in userdata metadata vendordata; do", "dd if=/dev/zero of=/var/tmp/seal-zeros"):
        assert line in seal, line
    assert seal.index("dd if=/dev/zero") < seal.index("fstrim -av")
