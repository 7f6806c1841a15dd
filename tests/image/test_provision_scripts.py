"""Provisioning scripts: shellcheck-clean, `#!/bin/sh -eux`, one job each."""

from __future__ import annotations

import os
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


def test_seal_in_a_real_root_leaves_nothing_instance_specific(tmp_path: Path) -> None:
    """seal.sh, run as the base image build runs it (base_image.seal, chroot), on a copy of a real Debian root."""
    from ha_ingress_build import base_image, release_roots

    if os.geteuid() != 0:
        pytest.fail("needs root (chroot); run the tests as root")
    subproc.require_tool("debootstrap", "debootstrap")
    assert base_image.SEAL_SCRIPT == PROVISION / "seal.sh"
    base = release_roots.ensure_root("debian12-minbase", PROVISION.parents[1] / "build" / "roots")
    # A file system of its own, as the base image's disk is: seal.sh zero-fills the free space.
    image, root = tmp_path / "fs.img", tmp_path / "root"
    subproc.run(["truncate", "-s", "700M", image])
    subproc.run(["mkfs.ext4", "-q", image])
    root.mkdir()
    subproc.run(["mount", "-o", "loop", image, root])
    try:
        subproc.run(["cp", "-a", f"{base}/.", root])
        _seal_and_check(root)
    finally:
        subproc.run(["umount", root], check=False)


def _seal_and_check(root: Path) -> None:
    from ha_ingress_build import base_image

    planted = {
        "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
        "var/lib/dbus/machine-id": "0123456789abcdef0123456789abcdef\n",
        "etc/ssh/ssh_host_ed25519_key": "secret\n",
        "root/.ssh/authorized_keys": "ssh-ed25519 AAAA builder\n",
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease": "lists\n",
        "var/cache/apt/archives/haproxy_2.6_amd64.deb": "deb\n",
        "var/tmp/build-leftover": "x\n",
        "tmp/ha-ingress-proxy-pkgs/ha-ingress-proxy.deb": "pkg\n",
        "var/log/apt/history.log": "Start-Date: today\n",
        "etc/ha-ingress-proxy/secrets.env": "HAPROXY_STATS_PASSWORD=build-canary-123\n",
        "var/lib/systemd/random-seed": "entropy\n",
    }
    for rel, text in planted.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("nameserver 10.0.2.3\n")

    base_image.seal(root)

    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "etc/resolv.conf").read_text() == ""
    assert (root / "var/log/apt/history.log").stat().st_size == 0
    for rel in ("var/lib/dbus/machine-id", "etc/ssh/ssh_host_ed25519_key", "root/.ssh/authorized_keys",
                "var/cache/apt/archives/haproxy_2.6_amd64.deb", "var/tmp/build-leftover", "tmp/ha-ingress-proxy-pkgs",
                "etc/ha-ingress-proxy/secrets.env", "var/lib/systemd/random-seed", "var/tmp/seal-zeros",
                f"tmp/{base_image.SEAL_SCRIPT.name}"):
        assert not (root / rel).exists(), rel
    assert not list((root / "var/lib/apt/lists").glob("*InRelease"))
    # idempotent: a second run changes nothing and does not fail
    base_image.seal(root)
    assert (root / "etc/machine-id").read_text() == ""
