"""Boot a qcow2 for tests: overlay disk, NoCloud seed, NIC on a bridge inside a netns.

Everything the VM can reach lives in a network namespace the caller creates (`NetNS`):
a bridge with an address for the host side, and one tap per VM. qemu runs inside that
namespace (`ip netns exec`), so its tap and all VM traffic stay there. The image is never
written: each VM gets a qcow2 overlay backed by it. VMs and namespaces are stopped by PID
and name of what this module made, never by pattern.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ha_ingress_proxy import subproc
from ha_ingress_proxy.errors import UserError


@dataclass
class NetNS:
    """A network namespace with one bridge; `ip netns exec <name>` reaches it."""

    name: str
    bridge: str = "br0"
    host_cidr: str = "10.213.0.1/24"
    taps: list[str] = field(default_factory=list)

    def create(self) -> NetNS:
        """Create the namespace, its loopback and the bridge with host_cidr. Fails if the name is taken."""
        subproc.run(["ip", "netns", "add", self.name], context="create netns")
        self.ip("link", "set", "lo", "up")
        self.ip("link", "add", self.bridge, "type", "bridge")
        self.ip("addr", "add", self.host_cidr, "dev", self.bridge)
        self.ip("link", "set", self.bridge, "up")
        return self

    def ip(self, *args: str) -> str:
        """Run `ip <args>` inside the namespace."""
        return subproc.run(["ip", "-n", self.name, *args], context=f"netns {self.name}").stdout

    def exec_argv(self, argv: list[str]) -> list[str]:
        """argv that runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def add_tap(self, tap: str) -> str:
        """A tap device enslaved to the bridge; qemu opens it by name from inside the namespace."""
        self.ip("tuntap", "add", "dev", tap, "mode", "tap")
        self.ip("link", "set", tap, "master", self.bridge)
        self.ip("link", "set", tap, "up")
        self.taps.append(tap)
        return tap

    def delete(self) -> None:
        """Remove the namespace (its bridge and taps go with it)."""
        subproc.run(["ip", "netns", "delete", self.name], check=False)

    def __enter__(self) -> NetNS:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()


@dataclass
class VM:
    """One qemu process booted from an overlay of an image."""

    name: str
    workdir: Path
    proc: subprocess.Popen | None = None
    address: str = ""
    key: Path | None = None
    ssh_user: str = "root"
    netns: NetNS | None = None
    started_at: float = 0.0

    @property
    def serial_log(self) -> Path:
        return self.workdir / f"{self.name}.serial.log"

    def ssh_argv(self, *command: str, timeout: int = 5) -> list[str]:
        """ssh to the VM from inside its namespace (command quoted for the remote shell) with the throwaway key (host key not pinned: fresh VM)."""
        argv = ["ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", f"ConnectTimeout={timeout}", f"{self.ssh_user}@{self.address}", shlex.join(command)]
        return self.netns.exec_argv(argv) if self.netns else argv

    def ssh(self, *command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command on the VM over SSH."""
        return subproc.run(self.ssh_argv(*command), check=check, timeout=timeout, context=f"ssh {self.name}")

    def wait_for_ssh(self, timeout: float = 600) -> float:
        """Poll until `ssh true` works; return seconds since the VM started. Fails early if qemu exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise UserError(f"VM {self.name}: qemu exited with {self.proc.returncode} before SSH came up",
                                f"serial log: {self.serial_log}")
            try:
                if self.ssh("true", check=False, timeout=30).returncode == 0:
                    return time.monotonic() - self.started_at
            except subproc.CommandError:
                pass  # ssh itself timed out; try again
            time.sleep(3)
        raise UserError(f"VM {self.name}: no SSH within {timeout:.0f} s", f"serial log: {self.serial_log}")

    def stop(self, timeout: float = 20) -> None:
        """Stop qemu by its PID (the `ip netns exec` wrapper execs qemu, so it is the same process)."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


def make_seed(seed_dir: Path, user_data: str, meta_data: str, network_config: str | None = None) -> Path:
    """Write a NoCloud seed ISO (volume id cidata) from the given documents; return its path."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    files = {"user-data": user_data, "meta-data": meta_data}
    if network_config is not None:
        files["network-config"] = network_config
    for name, text in files.items():
        (seed_dir / name).write_text(text)
    iso = seed_dir / "seed.iso"
    subproc.require_tool("genisoimage", "genisoimage")
    subproc.run(["genisoimage", "-quiet", "-output", iso, "-volid", "cidata", "-joliet", "-rock",
                *[seed_dir / n for n in files]], context="seed iso")
    return iso


def static_network_config(mac: str, cidr: str, gateway: str | None = None) -> str:
    """cloud-init network-config v2: a fixed address on the NIC with this MAC (no DHCP in the netns)."""
    lines = ["version: 2", "ethernets:", "  nic0:", "    match:", f"      macaddress: '{mac}'",
             "    set-name: eth0", f"    addresses: ['{cidr}']"]
    if gateway:
        lines.append(f"    gateway4: {gateway}")
    return "\n".join(lines) + "\n"


def boot_vm(
    image: Path,
    *,
    name: str,
    workdir: Path,
    netns: NetNS,
    address_cidr: str,
    public_key: str,
    private_key: Path,
    accelerator: str = "tcg",
    memory_mib: int = 1024,
    cpus: int = 1,
    mac: str = "52:54:00:12:34:56",
    extra_meta_data: str = "",
) -> VM:
    """Boot `image` (untouched, via an overlay) on a new tap of `netns`'s bridge; return the running VM.

    The seed authorises `public_key` for root and gives the NIC `address_cidr`. Call
    vm.wait_for_ssh(), then vm.stop(). The caller owns the namespace and deletes it.
    """
    subproc.require_tool("qemu-system-x86_64", "qemu-system-x86")
    subproc.require_tool("qemu-img", "qemu-utils")
    workdir.mkdir(parents=True, exist_ok=True)
    overlay = workdir / f"{name}.qcow2"
    overlay.unlink(missing_ok=True)
    subproc.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", Path(image).resolve(), overlay],
               context="overlay")
    user_data = ("#cloud-config\ndisable_root: false\nssh_pwauth: false\nusers: []\n"
                 f"ssh_authorized_keys:\n  - {public_key.strip()}\n")
    meta_data = f"instance-id: {name}-{int(time.time())}\nlocal-hostname: {name}\n{extra_meta_data}"
    seed = make_seed(workdir / f"{name}-seed", user_data, meta_data, static_network_config(mac, address_cidr))
    tap = netns.add_tap(f"tap-{name}"[:15])
    vm = VM(name=name, workdir=workdir, address=address_cidr.split("/")[0], key=private_key, netns=netns)
    vm.serial_log.unlink(missing_ok=True)
    argv = ["qemu-system-x86_64", "-accel", accelerator, "-m", str(memory_mib), "-smp", str(cpus),
            "-nodefaults", "-display", "none", "-no-user-config",
            "-drive", f"file={overlay},if=virtio,format=qcow2,discard=unmap",
            "-drive", f"file={seed},if=virtio,format=raw,media=cdrom,readonly=on",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
            "-serial", f"file:{vm.serial_log}"]
    vm.started_at = time.monotonic()
    log = open(workdir / f"{name}.qemu.log", "wb")  # noqa: SIM115 - closed with the process
    vm.proc = subproc.start(netns.exec_argv(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return vm


def serial_tail(vm: VM, lines: int = 40) -> str:
    """The last lines of a VM's serial console, for error messages."""
    try:
        text = vm.serial_log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no serial log)"
    return "\n".join(text.splitlines()[-lines:])
