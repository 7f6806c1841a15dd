"""The image pipeline: base qcow2 -> Packer bake (qemu source) -> node image + manifest.

    build_base()          Debian 12 base qcow2 from the Debian mirror (base_image.py)
    bake()                packer build -only ha-ingress-proxy.qemu.node, throwaway SSH key
    detect_accelerator()  kvm only where it really runs a guest, else tcg

Every subprocess goes through ha_ingress_proxy.subproc; Packer never phones home
(CHECKPOINT_DISABLE) and its VM reaches nothing but its SSH port forward on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ha_ingress_build.base_image import BaseRecipe, build_base
from ha_ingress_build.digest import file_sha256
from ha_ingress_build.step_timer import StepTimer
from ha_ingress_proxy import subproc
from ha_ingress_proxy.errors import UserError

__all__ = ["BaseRecipe", "BakeResult", "build_base", "bake", "detect_accelerator", "packer_env",
           "PACKER_DIR", "BUILD_NAME", "QEMU_ONLY"]

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKER_DIR = REPO_ROOT / "packer"
BUILD_NAME = "ha-ingress-proxy"
# Packer 1.6.6 with a named build: without the build-name prefix -only silently matches nothing.
QEMU_ONLY = f"{BUILD_NAME}.qemu.node"


def packer_env(cache_dir: Path | None = None) -> dict[str, str]:
    """Environment for every packer call: no update check (it would leave the machine), own cache."""
    env = {"CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}
    if cache_dir is not None:
        env["PACKER_CACHE_DIR"] = str(cache_dir)
    return env


def find_probe_kernel() -> Path | None:
    """A Linux kernel to boot in the KVM probe: the base image's (build/base/*.vmlinuz) or the host's."""
    candidates = sorted((REPO_ROOT / "build" / "base").glob("*.vmlinuz")) + sorted(Path("/boot").glob("vmlinuz-*"))
    return candidates[-1] if candidates else None


def kvm_usable() -> bool:
    """True when /dev/kvm exists and opens read-write (necessary, not sufficient: see detect_accelerator)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def detect_accelerator(probe_seconds: float = 30.0, kernel: Path | None = None) -> str:
    """Return "kvm" if a Linux guest really runs under KVM here, else "tcg".

    A /dev/kvm that opens is not enough: on this project's machines it opens, SeaBIOS
    and GRUB run, and the vCPU hangs once the Linux kernel starts. So the probe boots a
    kernel (`kernel`, else find_probe_kernel()) under KVM with a timeout and wants its
    "Linux version" banner on the serial port. No kernel to try means "tcg". The probe
    qemu has no NIC and no disk and is stopped by its PID. HA_INGRESS_ACCELERATOR skips it.
    """
    forced = os.environ.get("HA_INGRESS_ACCELERATOR")
    if forced:
        return forced
    if not kvm_usable():
        return "tcg"
    kernel = kernel or find_probe_kernel()
    if kernel is None:
        return "tcg"
    return "kvm" if probe_kernel("kvm", kernel, probe_seconds) else "tcg"


def probe_kernel(accel: str, kernel: Path, seconds: float) -> bool:
    """Boot `kernel` (no disk, no NIC, no initrd) under `accel`; True if it prints its banner in time."""
    subproc.require_tool("qemu-system-x86_64", "qemu-system-x86")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="accel-probe-") as tmp:
        out = Path(tmp) / "serial.log"
        argv = ["qemu-system-x86_64", "-accel", accel, "-M", "pc", "-m", "256", "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-nic", "none", "-no-reboot",
                "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1", "-serial", f"file:{out}"]
        proc = subproc.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if out.exists() and b"Linux version" in out.read_bytes():
                    return True
                if proc.poll() is not None:
                    return False
                time.sleep(0.2)
            return False
        finally:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass  # stuck in the host kernel; it goes when it can, we do not wait for it


@dataclass(frozen=True)
class BakeResult:
    """What bake() made and how long it took."""

    image: Path
    size_bytes: int
    seconds: float
    steps: dict[str, float]
    # the throwaway password the build VM held (write_bake_seed); the image must not hold it
    build_canary: str = ""


_USER_DATA = """#cloud-config
# Build-time only: lets Packer in as {user} with this build's throwaway key.
# seal.sh removes the key before the image is saved.
disable_root: false
ssh_pwauth: false
users: []
ssh_authorized_keys:
  - {key}
# A build canary: a throwaway stats password, delivered where a real one would
# land (secrets.env), so the image test can prove that no secret the build VM
# held survives the seal. It is used nowhere and never leaves build/.
write_files:
  - path: /etc/ha-ingress-proxy/secrets.env
    owner: root:root
    permissions: "0600"
    content: |
      HAPROXY_STATS_PASSWORD={canary}
"""

# cloud-init's VMware datasource (guestinfo, the vsphere-clone source) overwrites these
# guestinfo keys once it has read them; seal.sh clears them again (packer/build.pkr.hcl).
_META_DATA = """instance-id: {instance_id}
local-hostname: ha-ingress-proxy-bake
cleanup-guestinfo:
  - userdata
  - vendordata
"""


def write_bake_seed(seed_dir: Path, public_key: str, instance_id: str, user: str = "root",
                    canary: str | None = None) -> str:
    """user-data + meta-data for the build VM (NoCloud cd_files, guestinfo, EC2/OpenStack user data).

    Returns the build canary (a fresh throwaway password unless given) the user-data plants.
    """
    if user != "root":
        raise UserError("bake: only ssh_username=root is wired into the seed so far")
    canary = canary or secrets.token_urlsafe(24)
    seed_dir.mkdir(parents=True, exist_ok=True)
    (seed_dir / "user-data").write_text(_USER_DATA.format(user=user, key=public_key.strip(), canary=canary))
    (seed_dir / "meta-data").write_text(_META_DATA.format(instance_id=instance_id))
    return canary


def make_keypair(path: Path, comment: str) -> str:
    """A fresh ed25519 key without passphrase at `path` (old one replaced); return the public key."""
    subproc.require_tool("ssh-keygen", "openssh-client")
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    subproc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], context="ssh-keygen")
    path.chmod(0o600)
    return path.with_name(path.name + ".pub").read_text().strip()


def bake(
    base_qcow2: str | os.PathLike[str],
    package_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] = "build/image",
    accelerator: str | None = None,
    *,
    base: str = "debian-12",
    image_version: str = "0.0.0-dev",
    extra_vars: dict[str, str] | None = None,
    timer: StepTimer | None = None,
) -> BakeResult:
    """Bake the node image from `base_qcow2` with Packer's qemu source; return the qcow2 made.

    The image lands in <out_dir>/<base>/ha-ingress-proxy-<base>-<version>.qcow2 (replaced
    if present). accelerator None means detect_accelerator(). Prints the step times.
    """
    timer = timer or StepTimer("bake")
    subproc.require_tool("packer", "packer")
    base_qcow2, package_dir = Path(base_qcow2).resolve(), Path(package_dir).resolve()
    out = Path(out_dir).resolve()
    if not base_qcow2.is_file():
        raise UserError(f"{base_qcow2}: base image not found (build it with image.build_base)")
    if not package_dir.is_dir():
        raise UserError(f"{package_dir}: package directory not found")
    work = out / "bake"
    started = time.monotonic()
    with timer.step("accelerator"):
        accel = accelerator or detect_accelerator()
        print(f"accelerator: {accel}")
    with timer.step("key and seed"):
        name = f"ha-ingress-proxy-bake-{time.strftime('%Y%m%d%H%M%S')}"
        canary = write_bake_seed(work / "seed", make_keypair(work / "id_ed25519", name), name)
    with timer.step("base checksum"):
        base_sha256 = file_sha256(base_qcow2)
    variables = {
        "base": base, "base_image_url": str(base_qcow2), "base_image_checksum": f"sha256:{base_sha256}",
        "package_dir": str(package_dir), "seed_dir": str(work / "seed"),
        "ssh_private_key_file": str(work / "id_ed25519"), "output_dir": str(out), "accelerator": accel,
        "image_version": image_version, "serial_log": str(out / f"{base}-serial.log"), **(extra_vars or {}),
    }
    with timer.step("packer build (qemu)"):
        _packer_build(base, variables, out)
    image = _baked_image(out / base / f"ha-ingress-proxy-{base}-{image_version}.qcow2", work, out)
    result = BakeResult(image=image, size_bytes=image.stat().st_size,
                        seconds=time.monotonic() - started, steps=timer.as_dict(), build_canary=canary)
    (out / f"{base}.bake.json").write_text(json.dumps(
        {"image": str(image), "size_bytes": result.size_bytes, "steps": result.steps}, indent=2) + "\n")
    print(timer.summary())
    print(f"image: {image} ({result.size_bytes / 2**20:.0f} MiB)")
    return result


def _packer_build(base: str, variables: dict[str, str], out: Path) -> None:
    """`packer build` of the qemu source only, with the base's var file and these variables."""
    argv: list[str] = ["packer", "build", "-force", "-only", QEMU_ONLY,
                       "-var-file", str(PACKER_DIR / "bases" / f"{base}.pkrvars.hcl")]
    for k, v in variables.items():
        argv += ["-var", f"{k}={v}"]
    argv.append(str(PACKER_DIR))
    subproc.run(argv, capture=False, env=packer_env(out / "packer_cache"), cwd=REPO_ROOT,
                context="packer build", timeout=3600)


def _baked_image(image: Path, work: Path, out: Path) -> Path:
    """The image Packer was to make (an error when it is missing); the bake's key and cache dropped."""
    if not image.is_file():
        raise UserError(f"packer finished but {image} is missing",
                        f"(is -only {QEMU_ONLY} still the qemu source of build '{BUILD_NAME}'?)")
    for p in (work / "id_ed25519", work / "id_ed25519.pub"):
        p.unlink(missing_ok=True)  # the key is worthless now (sealed out of the image); drop it anyway
    shutil.rmtree(out / "packer_cache", ignore_errors=True)
    return image
