"""The baked image carries no build secret: read the qcow2 without booting it.

The image is the README's: pipeline.build_image(examples/active-active.yaml, build/), reused
when its stamp matches (as tests/image/test_two_vms.py does, so CI bakes once). The bake's
cloud-init seed gives the build VM a throwaway root SSH key (disable_root: false) and plants
a build canary, a throwaway stats password, in /etc/ha-ingress-proxy/secrets.env
(bake.write_bake_seed); the stamp records it. That the build VM processed this user-data
is proven by the bake itself: Packer logs in with the key the same user-data authorises.

How the image is read: libguestfs (guestfish) cannot run here - its appliance needs a
kernel and modules on the host (/boot and /lib/modules are empty in this container, the
host runs its own 6.x kernel) and /dev/kvm hangs; nbd is not available either (no nbd
module). So `qemu-img convert` reads the qcow2 (opened read-only, never written) into a
sparse raw copy in the test's temp dir; a loop device covers the root partition of that
copy (offset from sfdisk) and it is mounted `-o ro`. The copy's loop device is writable on
purpose: ext4 then replays a journal left unfinished, so the test sees the files a booting
VM would see (a read-only device with `noload` would show stale metadata instead).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, need_root

from ha_ingress_build import pipeline
from ha_ingress_proxy import subproc

pytestmark = pytest.mark.image

INVENTORY = REPO / "examples" / "active-active.yaml"
BUILD = REPO / "build"
SEED_USER_DATA = BUILD / "image" / "bake" / "seed" / "user-data"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Baked:
    image: Path
    root: Path  # the image's root filesystem, mounted read-only
    raw: Path  # the raw copy of the whole disk
    canary: str


def _partition(raw: Path) -> tuple[int, int]:
    """(offset, size) in bytes of the image's Linux partition (the base image has exactly one)."""
    table = json.loads(subproc.run(["sfdisk", "--json", raw], context="sfdisk --json").stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    [part] = [p for p in table["partitions"] if p["type"] in ("83", "0FC63DAF-8483-4772-8E79-3D69D8477DE4")]
    return part["start"] * sector, part["size"] * sector


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baked]:
    need_root()
    made = pipeline.build_image(INVENTORY, BUILD)
    canary = str(made.get("build_canary") or "")
    assert len(canary) >= 24, f"no build canary in the bake stamp: {made.get('build_canary')!r}"
    image = Path(str(made["image"]))
    work = tmp_path_factory.mktemp("image-ro")
    raw = work / "disk.raw"
    subproc.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, raw], context="qemu-img convert",
                timeout=900)
    offset, size = _partition(raw)
    loop = subproc.run(["losetup", "--find", "--show", "--offset", str(offset),
                        "--sizelimit", str(size), raw], context="losetup").stdout.strip()
    mnt = work / "root"
    mnt.mkdir()
    try:
        subproc.run(["mount", "-o", "ro", loop, mnt], context="mount read-only")
        try:
            yield Baked(image=image, root=mnt, raw=raw, canary=canary)
        finally:
            subproc.run(["umount", mnt], check=False)
    finally:
        subproc.run(["losetup", "-d", loop], check=False)
        raw.unlink(missing_ok=True)


def test_the_build_vm_was_given_the_canary(baked: Baked) -> None:
    """Not vacuous: the seed the bake booted with held the canary where a real secret would go."""
    text = SEED_USER_DATA.read_text()
    assert f"HAPROXY_STATS_PASSWORD={baked.canary}" in text and "/etc/ha-ingress-proxy/secrets.env" in text
    assert "disable_root: false" in text  # and the throwaway root login the seal must undo
    assert (baked.root / "usr/share/ha-ingress-proxy/image-manifest.json").is_file()  # the right filesystem


def test_no_ssh_host_keys_authorized_keys_or_machine_id(baked: Baked) -> None:
    root = baked.root
    assert sorted(p.name for p in (root / "etc/ssh").glob("ssh_host_*")) == []
    found = [str(p.relative_to(root)) for base in ("root", "home", "etc", "var")
             for p in (root / base).rglob("authorized_keys*") if not p.is_symlink()]
    assert found == []
    assert (root / "etc/machine-id").read_bytes() == b""
    dbus_id = root / "var/lib/dbus/machine-id"
    assert not dbus_id.exists() or dbus_id.is_symlink()
    assert not (root / "var/lib/systemd/random-seed").exists()


def test_no_cloud_init_state_build_user_or_sudo_rule(baked: Baked) -> None:
    root = baked.root
    cloud = root / "var/lib/cloud"
    assert sorted(p.name for p in cloud.glob("instance*")) == [] if cloud.exists() else True
    assert not (cloud / "data").exists() or list((cloud / "data").iterdir()) == []
    users = [line.split(":") for line in (root / "etc/passwd").read_text().splitlines()]
    humans = [u[0] for u in users if 1000 <= int(u[2]) < 65534]
    assert humans == [], f"login users in the image (cloud-init makes its user at first boot): {humans}"
    sudoers = root / "etc/sudoers.d"
    rules = sorted(p.name for p in sudoers.iterdir() if p.name != "README") if sudoers.exists() else []
    assert rules == []
    shadow = {line.split(":")[0]: line.split(":")[1] for line in (root / "etc/shadow").read_text().splitlines()}
    assert shadow["root"] in ("*", "!", "!*") or shadow["root"].startswith("!"), "root has a usable password"
    assert not (root / "etc/ha-ingress-proxy/secrets.env").exists()


def _files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            if stat.S_ISREG(p.lstat().st_mode):
                yield p


def _holds(path: Path, needle: bytes) -> bool:
    with open(path, "rb") as fh:
        tail = b""
        while chunk := fh.read(CHUNK):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle):]
    return False


def test_no_file_holds_the_build_canary(baked: Baked) -> None:
    needle = baked.canary.encode()
    holders = [str(p.relative_to(baked.root)) for p in _files(baked.root) if _holds(p, needle)]
    assert holders == [], f"files in the image hold the build's stats password: {holders}"


def test_no_file_holds_a_digest_of_the_build_secret(baked: Baked) -> None:
    """A digest of the secrets file is as good as the password to an offline guesser: the image
    manifest once listed /etc/ha-ingress-proxy/secrets.env with its sha256."""
    content = f"HAPROXY_STATS_PASSWORD={baked.canary}\n".encode()
    digests = [hashlib.sha256(content).hexdigest().encode(), hashlib.md5(content).hexdigest().encode()]
    holders = [str(p.relative_to(baked.root)) for p in _files(baked.root) if any(_holds(p, d) for d in digests)]
    assert holders == [], f"files in the image hold a digest of the build's secrets.env: {holders}"
    manifest = json.loads((baked.root / "usr/share/ha-ingress-proxy/image-manifest.json").read_text())
    assert [f for f in manifest["files"] if not (baked.root / f.lstrip("/")).exists()] == [], \
        "the manifest describes files the image does not have (build-time files)"


def test_no_block_of_the_disk_holds_the_build_canary(baked: Baked) -> None:
    """Stronger than files: deleted data the seal left in unused blocks (it fstrims) or in the journal."""
    needle = baked.canary.encode()
    hits = []
    with open(baked.raw, "rb") as fh:
        fd = fh.fileno()
        end = os.fstat(fd).st_size
        pos = 0
        while pos < end:
            try:
                data_at = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole_at = os.lseek(fd, data_at, os.SEEK_HOLE)
            fh.seek(data_at)
            tail, at = b"", data_at
            while at < hole_at:
                chunk = fh.read(min(CHUNK, hole_at - at))
                if not chunk:
                    break
                i = (tail + chunk).find(needle)
                if i >= 0:
                    hits.append(at - len(tail) + i)
                tail, at = chunk[-len(needle):], at + len(chunk)
            pos = hole_at
    assert hits == [], f"the build's stats password is still on the disk at byte offsets {hits[:5]}"
