"""VM helpers for the image tests: a network namespace with a bridge, and a handle on one qemu VM.

Everything a VM can reach lives in a network namespace the caller creates (`NetNS`):
a bridge with an address for the host side, and one tap per VM. qemu runs inside that
namespace (`ip netns exec`), so its tap and all VM traffic stay there. `VM` is
what a test keeps of a qemu it started (tests/image/test_two_vms.py boots them):
its address, its serial log, stop it. VMs and namespaces are stopped by PID and
name of what was made, never by pattern.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ha_ingress_proxy import subproc


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
    """One qemu process booted from an overlay of an image (reached by the test over SSH at address)."""

    name: str
    workdir: Path
    proc: subprocess.Popen | None = None
    address: str = ""
    started_at: float = 0.0

    @property
    def serial_log(self) -> Path:
        return self.workdir / f"{self.name}.serial.log"

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


def qemu_argv(vm: VM, accelerator: str, memory_mib: int, disk: Path, seed_iso: Path, tap: str, mac: str) -> list[str]:
    """qemu for one proxy VM: one CPU, the disk (an overlay) and the NoCloud seed as virtio drives,
    one virtio NIC on `tap` with `mac`, the serial console to vm.serial_log, no display."""
    return ["qemu-system-x86_64", "-accel", accelerator, "-m", str(memory_mib), "-smp", "1",
            "-nodefaults", "-display", "none", "-no-user-config",
            "-drive", f"file={disk},if=virtio,format=qcow2,discard=unmap",
            "-drive", f"file={seed_iso},if=virtio,format=raw,media=cdrom,readonly=on",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
            "-serial", f"file:{vm.serial_log}"]


def serial_tail(vm: VM, lines: int = 40) -> str:
    """The last lines of a VM's serial console, for error messages."""
    try:
        text = vm.serial_log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no serial log)"
    return "\n".join(text.splitlines()[-lines:])
