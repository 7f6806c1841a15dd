"""The Debian 12 base image: debootstrap into a loop-mounted raw disk, GRUB for BIOS, qcow2 out.

Needs root and only the Debian mirror. Every mount and loop device is undone on the way
out, on success and on failure alike (the ExitStack below is the shell's `trap`).
The result is reused while its recipe is unchanged (a stamp file holds the recipe digest).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ha_ingress_build.digest import file_sha256
from ha_ingress_build.release_roots import debootstrap, host_mirror
from ha_ingress_build.step_timer import StepTimer
from ha_ingress_proxy import subproc
from ha_ingress_proxy.render import File, Tree, write_tree
from ha_ingress_proxy.errors import UserError

# Packages debootstrap lays down itself (minbase + what apt needs to work in the chroot).
BOOTSTRAP_INCLUDE: tuple[str, ...] = ("ca-certificates", "gnupg")

# Packages the proxy node image carries; apt resolves them in the chroot (no recommends).
IMAGE_PACKAGES: tuple[str, ...] = (
    "systemd-sysv", "udev", "dbus", "kmod", "linux-image-amd64", "grub-pc", "initramfs-tools",
    "openssh-server", "sudo", "cloud-init", "cloud-guest-utils", "fdisk", "e2fsprogs",
    "ifupdown", "isc-dhcp-client", "iproute2", "iputils-ping", "netbase", "procps", "less",
    "python3", "python3-yaml", "python3-jinja2",
    "haproxy", "keepalived", "rsyslog", "logrotate",
    "nftables", "openssl",  # the package's packet filter unit; the stats page's self-signed certificate
    "open-vm-tools",  # VMware guestinfo for cloud-init's VMware datasource; idle elsewhere
)

DATASOURCES: tuple[str, ...] = ("NoCloud", "ConfigDrive", "OpenStack", "Ec2", "VMware", "None")

# Bump when the recipe below changes in a way the digest of BaseRecipe cannot see.
RECIPE_REVISION = 5  # 4: flush (fsfreeze) before converting; 5: sealed by image/provision/seal.sh
# The one sealing recipe, run in the chroot here and over SSH by the Packer bake.
SEAL_SCRIPT = Path(__file__).resolve().parents[2] / "image" / "provision" / "seal.sh"


@dataclass(frozen=True)
class BaseRecipe:
    """What the user may set for the base image; its digest decides whether to rebuild."""

    suite: str = "bookworm"
    mirror: str = field(default_factory=host_mirror)  # the Debian mirror the host's apt uses
    disk_size: str = "2G"
    packages: tuple[str, ...] = field(default=IMAGE_PACKAGES)
    datasources: tuple[str, ...] = field(default=DATASOURCES)
    kernel_cmdline: str = "console=tty0 console=ttyS0,115200n8"

    def digest(self) -> str:
        """sha256 over the recipe, its revision and the sealing script."""
        data = json.dumps({"rev": RECIPE_REVISION, "seal": file_sha256(SEAL_SCRIPT), **asdict(self)}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()


def build_base(
    out_dir: str | os.PathLike[str] = "build/base",
    recipe: BaseRecipe | None = None,
    *,
    name: str = "debian-12",
    force: bool = False,
    timer: StepTimer | None = None,
) -> Path:
    """Build <out_dir>/<name>.qcow2 (compressed) and <name>.qcow2.SHA256SUMS; return the qcow2 path.

    Skips the work when the qcow2 exists and was built from the same recipe (unless force).
    The debs apt downloads are kept in <out_dir>/cache/ so a rebuild needs little network.
    """
    recipe = recipe or BaseRecipe()
    timer = timer or StepTimer(f"base {name}")
    out = Path(out_dir).resolve()
    qcow2 = out / f"{name}.qcow2"
    stamp = out / f"{name}.qcow2.recipe"
    if not force and qcow2.exists() and stamp.exists() and stamp.read_text().strip() == recipe.digest():
        print(f"base image up to date: {qcow2}")
        return qcow2
    _require_build_tools()
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache" / "archives"
    (cache / "partial").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
    try:
        raw = work / f"{name}.raw"
        _build_raw(raw, work / "root", recipe, cache, timer, kernel_copy=out / f"{name}.vmlinuz")
        with timer.step("convert to qcow2"):
            tmp = out / f".{name}.qcow2.tmp"
            subproc.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, tmp], context="qemu-img")
            os.replace(tmp, qcow2)
        (out / f"{name}.qcow2.SHA256SUMS").write_text(f"{file_sha256(qcow2)}  {qcow2.name}\n")
        stamp.write_text(recipe.digest() + "\n")
        (out / f"{name}.times.json").write_text(json.dumps(timer.as_dict(), indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(timer.summary())
    print(f"base image: {qcow2} ({qcow2.stat().st_size / 2**20:.0f} MiB)")
    return qcow2


def _require_build_tools() -> None:
    if os.geteuid() != 0:
        raise UserError("building the base image needs root (loop devices, mounts, chroot)")
    for tool, pkg in [("debootstrap", "debootstrap"), ("qemu-img", "qemu-utils"), ("sfdisk", "fdisk"),
                      ("losetup", "mount"), ("partx", "util-linux"), ("mkfs.ext4", "e2fsprogs"),
                      ("fstrim", "util-linux"), ("blkid", "util-linux"),
                      ("fsfreeze", "util-linux")]:
        subproc.require_tool(tool, pkg)


def _build_raw(raw: Path, root: Path, recipe: BaseRecipe, cache: Path, timer: StepTimer, *, kernel_copy: Path) -> None:
    """The installed, configured, bootable and sealed system on a raw disk; everything unmounted after."""
    with ExitStack() as undo:
        with timer.step("partition"):
            root_dev, disk_dev = _attach_disk(raw, recipe.disk_size, undo)
            subproc.run(["mkfs.ext4", "-q", "-L", "root", root_dev], context="mkfs")
            uuid = subproc.run(["blkid", "-s", "UUID", "-o", "value", root_dev]).stdout.strip()
            root.mkdir()
            _mount(undo, root_dev, root)
        with timer.step("debootstrap"):
            debootstrap(recipe.suite, root, recipe.mirror, include=BOOTSTRAP_INCLUDE, cache_dir=cache)
        _mount_api(undo, root)
        with timer.step("install packages"):
            _install_packages(root, recipe, cache)
        with timer.step("configure"):
            write_tree(_configuration(recipe, uuid), root)
        with timer.step("grub"):
            _install_grub(root, root_dev, disk_dev, uuid)
        with timer.step("seal"):
            seal(root)
        # The kernel alone, for detect_accelerator()'s probe (does a Linux guest run under KVM?).
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if kernels:
            shutil.copyfile(kernels[-1], kernel_copy)
        _flush(root)
        undo.close()  # unmount everything before conversion


def _flush(root: Path) -> None:
    """Write out the root file system's dirty pages and checkpoint its journal.

    The unmounts are lazy (umount -l): the file system may still hold dirty pages and an
    unflushed journal when qemu-img reads the raw file. Freezing writes them all out and
    checkpoints the journal (GRUB reads ext4 without replaying it); without this, grub.cfg
    went missing from a base built on a loaded machine.
    """
    subproc.run(["fsfreeze", "--freeze", root], context="fsfreeze (flush the root file system)")
    subproc.run(["fsfreeze", "--unfreeze", root], context="fsfreeze --unfreeze")


def _attach_disk(raw: Path, size: str, undo: ExitStack) -> tuple[str, str]:
    """Create a sparse raw disk with one bootable MBR partition; return (partition dev, disk dev).

    Containers often lack udev: partitions of a loop device then exist in the kernel only
    after `partx -a`, and their /dev node only after we mknod it from sysfs.
    """
    subproc.run(["truncate", "-s", size, raw])
    subproc.run(["sfdisk", "-q", raw], input="label: dos\nstart=2048, type=83, bootable\n", context="sfdisk")
    disk = subproc.run(["losetup", "--find", "--show", "--partscan", raw], context="losetup").stdout.strip()
    undo.callback(subproc.run, ["losetup", "-d", disk], check=False)
    base = os.path.basename(disk)
    sys_part = Path(f"/sys/block/{base}/{base}p1")
    if not sys_part.exists():
        subproc.run(["partx", "-a", disk], check=False, context="partx")
        undo.callback(subproc.run, ["partx", "-d", disk], check=False)
    if not sys_part.exists():
        raise UserError(f"{disk}: partition 1 did not appear in {sys_part.parent}")
    part = f"{disk}p1"
    if not os.path.exists(part):
        major, minor = (int(x) for x in (sys_part / "dev").read_text().split(":"))
        os.mknod(part, 0o600 | 0o060000, os.makedev(major, minor))  # S_IFBLK
        undo.callback(_unlink_quietly, part)
    return part, disk


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _mount(undo: ExitStack, src: str | os.PathLike[str], dst: Path, *opts: str) -> None:
    subproc.run(["mount", *opts, src, dst], context=f"mount {dst}")
    undo.callback(subproc.run, ["umount", "-l", dst], check=False)


def _mount_api(undo: ExitStack, root: Path) -> None:
    """/dev, /proc and /sys inside the chroot; undone in reverse order."""
    for src, rel, opts in [("/dev", "dev", ("--bind",)), ("/dev/pts", "dev/pts", ("--bind",)),
                           ("proc", "proc", ("-t", "proc")), ("sysfs", "sys", ("-t", "sysfs"))]:
        (root / rel).mkdir(parents=True, exist_ok=True)
        _mount(undo, src, root / rel, *opts)


def _chroot(root: Path, argv: list[str], context: str = "", timeout: float | None = 1800) -> str:
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subproc.run(["chroot", root, *argv], env=env, context=context, timeout=timeout).stdout


# No daemon starts in the chroot while packages are installed (and would bind the build host's ports).
_NO_DAEMONS = "usr/sbin/policy-rc.d"


def _install_packages(root: Path, recipe: BaseRecipe, cache: Path) -> None:
    """apt-get install the image packages in the chroot, with the host's deb cache bind-mounted.

    No daemon starts meanwhile (policy-rc.d); the cache is unmounted again afterwards, so
    sealing (apt-get clean) cannot empty it.
    """
    write_tree({
        _NO_DAEMONS: File(b"#!/bin/sh\nexit 101\n", 0o755),
        "etc/apt/apt.conf.d/90-ha-ingress-proxy-image":
            File(b'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n', 0o644),
    }, root)
    archives = root / "var/cache/apt/archives"
    with ExitStack() as cache_mount:
        _mount(cache_mount, cache, archives, "--bind")
        # grub-pc asks where to install; we run grub-install ourselves.
        subproc.run(["chroot", root, "debconf-set-selections"],
                    input="grub-pc grub-pc/install_devices_empty boolean true\n"
                          "grub-pc grub-pc/install_devices multiselect\n",
                    context="debconf-set-selections")
        _chroot(root, ["apt-get", "update"], context="apt-get update")
        _chroot(root, ["apt-get", "install", "-y", "-q", *recipe.packages], context="apt-get install")
    (root / _NO_DAEMONS).unlink()


def _configuration(recipe: BaseRecipe, uuid: str) -> Tree:
    """fstab, network, cloud-init datasources, serial console, ssh host keys at boot."""
    ds = ", ".join(recipe.datasources)
    texts = {
        "etc/fstab": f"UUID={uuid} / ext4 errors=remount-ro,discard 0 1\n",
        "etc/hostname": "localhost\n",
        "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
        "etc/apt/sources.list": f"deb {recipe.mirror} {recipe.suite} main\n"
                                f"deb {recipe.mirror} {recipe.suite}-updates main\n"
                                f"deb http://security.debian.org/debian-security {recipe.suite}-security main\n",
        # cloud-init renders its network config (DHCP fallback, or the datasource's) as ENI files.
        "etc/network/interfaces": "# cloud-init writes the NICs' config into interfaces.d/\n"
                                  "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n",
        "etc/cloud/cloud.cfg.d/90_dpkg.cfg": f"datasource_list: [ {ds} ]\n",
        # cloud-init's default locale en_US.UTF-8 is not generated on this image: its locale module
        # failed and left cloud-config.service failed (the system "degraded") on every first boot.
        # C.UTF-8 is built into glibc: nothing to generate.
        "etc/cloud/cloud.cfg.d/91_ha-ingress-proxy-locale.cfg": "locale: C.UTF-8\n",
        "etc/default/grub": 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR="Debian"\n'
                            f'GRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX="{recipe.kernel_cmdline}"\n'
                            'GRUB_TERMINAL="console serial"\n'
                            'GRUB_SERIAL_COMMAND="serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1"\n'
                            "GRUB_DISABLE_OS_PROBER=true\n",
        # Host keys are removed when sealing; make them again before sshd's own config test.
        "etc/systemd/system/ssh.service.d/ha-ingress-proxy-hostkeys.conf":
            "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
    }
    return {rel: File(text.encode(), 0o644) for rel, text in texts.items()}


def _install_grub(root: Path, root_dev: str, disk_dev: str, uuid: str) -> None:
    _chroot(root, ["grub-install", "--target=i386-pc", "--modules=part_msdos ext2", disk_dev], context="grub-install")
    _chroot(root, ["update-grub"], context="update-grub")
    _grub_root_by_uuid(root, root_dev, uuid)


def _grub_root_by_uuid(root: Path, root_dev: str, uuid: str) -> None:
    """Make grub.cfg say root=UUID=... instead of the build host's loop partition.

    grub-mkconfig writes root=UUID only when /dev/disk/by-uuid/<uuid> exists, which needs
    udev; without it the kernel line names /dev/loopNp1, which the VM does not have.
    (update-grub inside the running VM, on a kernel update, writes the UUID by itself.)
    """
    cfg = root / "boot/grub/grub.cfg"
    text = cfg.read_text().replace(f"root={root_dev} ", f"root=UUID={uuid} ")
    if "/dev/loop" in text:
        raise UserError(f"{cfg}: still names a loop device after rewriting root= to UUID={uuid}")
    cfg.write_text(text)


def seal(root: Path) -> None:
    """Run image/provision/seal.sh in the root: the one sealing recipe, shared with the Packer bake.

    Nothing instance-specific is left: machine-id, ssh host keys, cloud-init state,
    apt lists and caches, logs, the build network's resolv.conf; then fstrim.
    """
    script = root / "tmp" / SEAL_SCRIPT.name
    shutil.copyfile(SEAL_SCRIPT, script)
    try:
        _chroot(root, ["sh", "-eux", f"/tmp/{SEAL_SCRIPT.name}"], context="seal.sh")
    finally:
        script.unlink(missing_ok=True)
