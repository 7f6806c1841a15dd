"""Day-2 scenarios on a pair of proxy VMs booted from the baked image: shutdown, rolling-replace.

The VMs, two stand-in clusters and a client sit on one L2 segment inside network
namespaces this module creates (names start with HIP_LAB_PREFIX, like the lab's):
a bridge in the segment namespace (the host side, .1, reaches the VMs' SSH through
netns_tools.py relay), the clusters at the inventory's endpoints (netns_tools.py
serve) and a client at .100 that runs the probe loop (netns_tools.py loop: a
request to every VIP every 20 ms, one JSON line each, with the MAC the client's
ARP table gives the VIP right after: which node answered). Nothing leaves the
namespaces; qemu runs inside the segment namespace on taps of its bridge.

    shutdown          `systemctl poweroff` of the node that holds the first VIP; the probe
                      counts failed requests, a VRRP sniffer on the node's tap sees its
                      priority-0 adverts, and its serial console shows the stop order.
    rolling-replace   docs/operations.md's procedure: drain + replace each non-master node
                      with an image N+1 VM, wait until it is healthy, drain the master (its
                      VIPs move), replace it, wait; a timestamped log and one record.
    upgrade           `apt-get install` of the .deb N+1 (then N again) on the first VIP's
                      holder under the probe and a held keep-alive connection.
    steady            no fault for STEADY_SECONDS under the probe, with a busy loop on every
                      node (saturated guests): every keepalived MASTER transition and every
                      VIP move the client sees is a false failover. advert_int: the nodes'
                      keepalived.conf edited in place and reloaded first (an experiment on
                      the advert interval without a bake; the next boot renders it again).

Each runs under settings "ours" (the product's way) or "seed" (the seed's way, on the
same image: the distro's units with no stop order between keepalived and haproxy, a
node powered off without a drain, a new config put in place by a haproxy restart).

`invoke bench --failover --scenario shutdown|rolling-replace` and `invoke
rolling-replace` call vm_bench(); records go to build/bench/failover.json (the
DESIGN record shape) and the raw runs to build/bench/vm-runs.json. Slow under TCG
(each boot a minute or two): measurement only, never part of the test suite.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ha_ingress_build import bake, cloudinit
from ha_ingress_lab import netns_tools
from ha_ingress_lab.vm import VM, NetNS, qemu_argv, serial_tail
from ha_ingress_proxy import inventory, layout, subproc
from ha_ingress_proxy.errors import UserError

PREFIX = os.environ.get("HIP_LAB_PREFIX", "hil")
TOOLS = Path(netns_tools.__file__)
HOST_SIDE = 1  # .1 on the nodes' /24: the host side of the segment (SSH relay)
CLIENT = 100  # .100: the probe client
MEMORY_MIB = 1024
BOOT_TIMEOUT = 1800.0  # TCG on a shared 2-core machine: boots took 13-15 min here
HEALTHY_TIMEOUT = 600.0
PROBE_INTERVAL = 0.02
PROBE_TIMEOUT = 1.0  # TCG guests on a busy host answer a plain GET in 0.3 s only most of the time
VM_SCENARIOS = ("shutdown", "rolling-replace", "upgrade", "steady")
STEADY_SECONDS = 60.0  # --seconds
VM_SETTINGS = ("ours", "seed")


def _mac(index: int) -> str:
    return f"52:54:00:1e:01:{index + 1:02x}"


def _net_of(address: str, host: int) -> str:
    return ".".join(address.split(".")[:3] + [str(host)])


@dataclass
class Log:
    """A timestamped log file (and stdout): wall clock UTC and seconds since the start."""

    path: Path
    t0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S', time.gmtime())} +{time.monotonic() - self.t0:7.1f}s  {msg}"
        print(line, flush=True)
        with self.path.open("a") as fh:
            fh.write(line + "\n")


@dataclass
class Pair:
    """The VM pair's segment, clusters, client and VMs; a context manager that removes all of it."""

    site: inventory.Site
    work: Path
    accelerator: str
    log: Callable[[str], None] = print
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    vms: dict[str, VM] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)  # node -> image its VM was booted from
    disks: dict[str, Path] = field(default_factory=dict)  # node -> its VM's overlay disk
    procs: list[subprocess.Popen] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    boots: int = 0
    probe_timeout: float = PROBE_TIMEOUT

    def __post_init__(self) -> None:
        first = self.site.nodes[0].address
        self.seg = NetNS(name=f"{PREFIX}-vm{self.tag}", host_cidr=f"{_net_of(first, HOST_SIDE)}/24")
        self.client_ns = f"{PREFIX}-vm{self.tag}-cl"
        self.client_addr = _net_of(first, CLIENT)
        self.macs = {n.name: _mac(i) for i, n in enumerate(self.site.nodes)}
        self.addresses = {n.name: str(n.address) for n in self.site.nodes}
        self.key = self.work / "id_ed25519"
        self.ssh_config = self.work / "ssh_config"

    # ------------------------------------------------------------------ set-up / tear-down
    def __enter__(self) -> Pair:
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            self._up()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _up(self) -> None:
        pub = bake.make_keypair(self.key, "ha-ingress-proxy-vm-pair")
        networks = {n: (mac, 24) for n, mac in self.macs.items()}
        made = cloudinit.seeds(self.site, "image", cloudinit.generate_password(), ssh_keys=(pub,), networks=networks)
        self.seed_dir = cloudinit.write_seeds(made, self.work / "seeds")
        self.ssh_config.write_text(
            f"Host {_net_of(self.site.nodes[0].address, 0).rsplit('.', 1)[0]}.*\n  User debian\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            f"  ProxyCommand ip netns exec {self.seg.name} {sys.executable} {TOOLS} relay %h %p\n")
        self.seg.create()
        self.namespaces.append(self.seg.name)
        for i, cluster in enumerate(self.site.clusters):
            ns = self._veth_ns(f"{self.seg.name}-k{i + 1}", f"{cluster.endpoint}/24")
            srv = subproc.start(["ip", "netns", "exec", ns, sys.executable, TOOLS, "serve", cluster.name,
                                 str(cluster.endpoint)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)  # haproxy's health checks reset connections: noise
            self.procs.append(srv)
            if srv.stdout.readline().strip() != b"ready":
                raise UserError(f"stand-in cluster {cluster.name} did not start")
        self._veth_ns(self.client_ns, f"{self.client_addr}/24")

    def _veth_ns(self, name: str, cidr: str) -> str:
        subproc.run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        peer = f"v{name[-10:]}"[:15]
        self.seg.ip("link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", name)
        self.seg.ip("link", "set", peer, "master", self.seg.bridge, "up")
        for args in (["addr", "add", cidr, "dev", "eth0"], ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"]):
            subproc.run(["ip", "-n", name, *args])
        return name

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for vm in self.vms.values():
            vm.stop(timeout=10)
        for ns in reversed(self.namespaces):
            subproc.run(["ip", "netns", "delete", ns], check=False)

    # ------------------------------------------------------------------ VMs
    def boot(self, node: str, image: Path) -> VM:
        """A new VM for `node` from a fresh overlay of `image`: a new disk, the node's seed and MAC."""
        self.boots += 1
        overlay = self.work / f"{node}-{self.boots}.qcow2"
        subproc.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.resolve()), str(overlay)])
        self.disks[node] = overlay
        self.images[node] = image
        return self._start(node)

    def restart(self, node: str) -> VM:
        """Boot `node` again from the disk its last VM left (a power-on after a poweroff)."""
        self.boots += 1
        return self._start(node)

    def _start(self, node: str) -> VM:
        tap = self.tap(node)
        if tap not in self.seg.taps:
            self.seg.add_tap(tap)
        disk, image = self.disks[node], self.images[node]
        vm = VM(name=f"{node}-{self.boots}", workdir=self.work, address=self.addresses[node])
        argv = qemu_argv(vm, self.accelerator, MEMORY_MIB, disk, self.seed_dir / node / "seed.iso", tap, self.macs[node])
        with open(self.work / f"{vm.name}.qemu.log", "wb") as qlog:
            vm.started_at = time.monotonic()
            vm.proc = subproc.start(self.seg.exec_argv(argv), stdin=subprocess.DEVNULL, stdout=qlog,
                                    stderr=subprocess.STDOUT)
        self.vms[node] = vm
        self.log(f"{node}: qemu started (pid {vm.proc.pid}) from {image.name}, serial log {vm.serial_log.name}")
        return vm

    def tap(self, node: str) -> str:
        return f"t{self.tag}{node[-4:]}"[:15]

    def ssh_argv(self, node: str, command: str) -> list[str]:
        return ["ssh", "-F", str(self.ssh_config), "-i", str(self.key), "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=15", f"debian@{self.addresses[node]}", command]

    def ssh(self, node: str, command: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        return subproc.run(self.ssh_argv(node, command), timeout=timeout, check=check, context=f"ssh {node}")

    def status(self, node: str) -> dict:
        """`ha-ingress-proxy status --json` on the node; {} when it cannot be had (yet)."""
        try:
            res = self.ssh(node, "sudo ha-ingress-proxy status --json", check=False, timeout=120)
        except UserError:  # a timeout: under TCG on a busy machine a VM can be very slow
            return {}
        text = res.stdout
        try:
            return json.loads(text[text.index("{"):]) if "{" in text else {}
        except ValueError:
            return {}

    def wait_ssh(self, node: str, timeout: float = BOOT_TIMEOUT) -> float:
        vm = self.vms[node]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if vm.proc.poll() is not None:
                raise UserError(f"{node}: qemu exited ({vm.proc.returncode})\n{serial_tail(vm)}")
            if "Kernel panic" in serial_tail(vm, 5):
                # Under TCG on a starved host the guest kernel can panic early ("IO-APIC + timer
                # doesn't work"): nothing is written yet, so power-cycle it once more.
                self.log(f"{node}: guest kernel panicked during boot ({serial_tail(vm, 1)[:120]}); booting again")
                vm.stop()
                self.boots += 1
                vm = self._start(node)
                deadline = time.monotonic() + timeout
            try:
                if self.ssh(node, "true", timeout=60, check=False).returncode == 0:
                    took = time.monotonic() - vm.started_at
                    # sudo looks the host name up; with no DNS on the segment each sudo waits for
                    # the resolver's timeout unless /etc/hosts has it (the image leaves
                    # manage_etc_hosts to the deployer)
                    self.ssh(node, 'grep -q "$(hostname)" /etc/hosts || '
                                   'echo "127.0.1.1 $(hostname)" | sudo tee -a /etc/hosts >/dev/null',
                             timeout=120, check=False)
                    return took
            except Exception:  # noqa: BLE001 - not up yet (refused, timeout)
                pass
            time.sleep(5)
        raise UserError(f"{node}: no SSH within {timeout:.0f} s\n{serial_tail(vm, 60)}")

    def healthy(self, report: dict) -> bool:
        """Applied, keepalived and haproxy running, not drained, every VIP MASTER/BACKUP, every backend UP."""
        if not (report.get("ok") and (report.get("keepalived") or {}).get("running")
                and (report.get("haproxy_process") or {}).get("running")
                and (report.get("haproxy") or {}).get("reachable")):
            return False
        if (report.get("drain") or {}).get("drained"):
            return False
        vrrp = report.get("vrrp") or {}
        if len(vrrp) != len(self.site.vips) or any(s not in ("MASTER", "BACKUP") for s in vrrp.values()):
            return False
        servers = [st for listener in (report.get("backends") or {}).values() for st in listener.values()]
        return bool(servers) and all(st.startswith("UP") for st in servers)

    def wait_healthy(self, node: str, timeout: float = HEALTHY_TIMEOUT) -> dict:
        """Wait for SSH, then until status says healthy (see healthy()); the report."""
        ssh_s = self.wait_ssh(node)
        self.log(f"{node}: SSH up {ssh_s:.0f} s after qemu start")
        deadline = time.monotonic() + timeout
        report: dict = {}
        retried = False
        while time.monotonic() < deadline:
            report = self.status(node)
            if not report.get("ok") and not retried and self.ssh(
                    node, "systemctl show -p Result --value ha-ingress-proxy-agent.service", check=False,
                    timeout=120).stdout.strip() == "timeout":
                # An image older than the 300 s TimeoutStartSec, starved at boot (TCG under load):
                # what an operator does, once, and said in the log.
                retried = True
                self.log(f"{node}: the agent's start timed out at boot; restarting it and the daemons once")
                self.ssh(node, "sudo systemctl restart ha-ingress-proxy-agent.service && "
                               "sudo systemctl start haproxy.service keepalived.service", check=False, timeout=600)
                continue
            if self.healthy(report):
                vm = self.vms[node]
                self.log(f"{node}: healthy {time.monotonic() - vm.started_at:.0f} s after qemu start: "
                         f"vrrp {report['vrrp']}, package {self.package_version(node)}")
                return report
            time.sleep(2)
        raise UserError(f"{node}: not healthy within {timeout:.0f} s: {json.dumps(report)[:2000]}")

    def package_version(self, node: str) -> str:
        return self.ssh(node, "dpkg-query -W -f '${Version}' ha-ingress-proxy", check=False).stdout.strip()

    def holders(self) -> dict[str, list[str]]:
        """VIP -> nodes whose status says they hold it (running VMs only)."""
        out: dict[str, list[str]] = {str(v.address): [] for v in self.site.vips}
        for node, vm in self.vms.items():
            if vm.proc and vm.proc.poll() is None:
                for vip in self.status(node).get("held") or []:
                    out.setdefault(vip, []).append(node)
        return out

    def wait_vips_settled(self, timeout: float = 120) -> dict[str, list[str]]:
        """Until every VIP is held by exactly one node."""
        deadline = time.monotonic() + timeout
        held = self.holders()
        while time.monotonic() < deadline and any(len(h) != 1 for h in held.values()):
            time.sleep(1)
            held = self.holders()
        return held

    def poweroff(self, node: str, timeout: float = 180) -> float:
        """`systemctl poweroff` on the node; waits until its qemu exits. Returns the time of the command."""
        vm = self.vms[node]
        t = time.monotonic()
        # The SSH session may be cut by the shutdown itself, or outlive the 30 s on a slow guest:
        # its exit status means nothing; qemu's exit below is the proof.
        try:
            self.ssh(node, "sudo systemctl poweroff", check=False, timeout=30)
        except UserError as exc:  # the timeout
            self.log(f"{node}: {exc.lines[0][-80:]} (the shutdown goes on)")
        try:
            vm.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"{node}: still running {timeout:.0f} s after systemctl poweroff\n{serial_tail(vm)}") from None
        self.log(f"{node}: powered off (qemu exited {time.monotonic() - t:.1f} s after `systemctl poweroff`)")
        return t

    # ------------------------------------------------------------------ client side
    def urls(self) -> list[str]:
        return [f"http://{v.address}/" for v in self.site.vips]

    def start_loop(self, out: Path, interval: float = PROBE_INTERVAL, timeout: float | None = None) -> subprocess.Popen:
        timeout = self.probe_timeout if timeout is None else timeout
        out.unlink(missing_ok=True)
        proc = subproc.start(["ip", "netns", "exec", self.client_ns, sys.executable, TOOLS, "loop", str(out),
                              *self.urls(), "--interval", str(interval), "--timeout", str(timeout)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def start_sniffer(self, node: str, out: Path) -> subprocess.Popen:
        out.unlink(missing_ok=True)
        with open(out.with_suffix(".err"), "wb") as err:  # kept: a sniffer that dies says why there
            proc = subproc.start(self.seg.exec_argv([sys.executable, str(TOOLS), "vrrp", str(out), self.tap(node)]),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        self.procs.append(proc)
        return proc

    def wait_successes(self, path: Path, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(r["ok"] for r in read_jsonl(path)) >= count:
                return
            time.sleep(0.2)
        raise UserError(f"probe loop: fewer than {count} successes in {timeout:.0f} s: {read_jsonl(path)[-3:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # the line being written
    return out


def outage(records: list[dict], t_fault: float) -> dict:
    """netns_lab.outage's rule on the loop's records: failed requests that ended after the fault;
    outage_ms 0 when none failed, else from the fault to the first success started after the last failure."""
    window = [r for r in records if r["done"] >= t_fault]
    failed = [r for r in window if not r["ok"]]
    if not failed:
        return {"outage_ms": 0.0, "failed_requests": 0, "requests": len(window), "recovered": True}
    last = max(r["t"] for r in failed)
    after = [r for r in window if r["t"] > last and r["ok"]]
    if not after:
        return {"outage_ms": round((window[-1]["done"] - t_fault) * 1000, 1), "failed_requests": len(failed),
                "requests": len(window), "recovered": False}
    return {"outage_ms": round(max(0.0, min(r["done"] for r in after) - t_fault) * 1000, 1),
            "failed_requests": len(failed), "requests": len(window), "recovered": True}


def vip_moves(records: list[dict], macs: dict[str, str]) -> dict[str, list[tuple[float, str]]]:
    """Per VIP URL: (time, node) each time the answering node (by the client's ARP entry) changed."""
    who = {mac: node for node, mac in macs.items()}
    moves: dict[str, list[tuple[float, str]]] = {}
    for r in records:
        if not r["ok"]:
            continue
        node = who.get(r["mac"], r["mac"] or "?")
        seq = moves.setdefault(r["url"], [])
        if not seq or seq[-1][1] != node:
            seq.append((r["t"], node))
    return moves


# ---------------------------------------------------------------------- shutdown
_STOP_LINE = re.compile(r"(Stopping|Stopped|Deactivated)\b.*?(keepalived|[Hh][Aa][Pp]roxy|ifup|[Rr]aise network|networking)")


def stop_order(serial_text: str) -> list[str]:
    """The serial console's stop lines for keepalived, haproxy and the network, in order."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", serial_text)
    return [line[m.start():].strip() for line in text.splitlines() for m in [_STOP_LINE.search(line)] if m]


def seed_units(pair: Pair, node: str) -> None:
    """The seed's stop order on `node` until its next boot: a same-named drop-in under /run (it wins
    over /usr/lib's) without the product's `After=haproxy.service`, so keepalived and haproxy stop
    side by side, as the distro's units do."""
    ours = PurePosixPath("/", layout.KEEPALIVED_DROPIN)
    runtime = PurePosixPath("/run/systemd/system", ours.relative_to("/usr/lib/systemd/system"))
    pair.ssh(node, f"sudo mkdir -p {runtime.parent} && sed 's/^After=haproxy.service /After=/' {ours} | "
                   f"sudo tee {runtime} >/dev/null && sudo systemctl daemon-reload")
    after = pair.ssh(node, "systemctl show -p After keepalived.service").stdout
    if "haproxy.service" in after.split("=", 1)[-1].split():
        raise UserError(f"{node}: keepalived still ordered after haproxy: {after.strip()}")


def shutdown_run(pair: Pair, run: int, settings: str = "ours") -> dict:
    """One `systemctl poweroff` of the first VIP's holder under the probe (the next run's _recover
    boots it again). seed: with the seed's stop order."""
    held = pair.wait_vips_settled()
    vip = str(pair.site.vips[0].address)
    victim = held[vip][0]
    other = next(n for n in pair.vms if n != victim)
    url = f"http://{vip}/"  # the victim's VIP: the other VIP is on `other` all along
    if settings == "seed":
        seed_units(pair, victim)
    after_units = pair.ssh(victim, "systemctl show -p After keepalived.service").stdout
    ordered = all(u in after_units.split() or u in after_units for u in ("haproxy.service", "network-online.target"))
    loop_log = pair.work / f"shutdown-{settings}-{run}.jsonl"
    sniff_log = pair.work / f"shutdown-{settings}-{run}.vrrp.jsonl"
    sniffer = pair.start_sniffer(victim, sniff_log)
    loop = pair.start_loop(loop_log)
    pair.wait_successes(loop_log, 25)
    serial_before = pair.vms[victim].serial_log.stat().st_size
    pair.log(f"shutdown #{run}: {victim} holds {vip}; systemctl poweroff")
    t_fault = pair.poweroff(victim)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
            r["ok"] and r["t"] > t_fault and r["url"] == url and r["mac"] == pair.macs[other]
            for r in read_jsonl(loop_log)):
        time.sleep(0.2)
    time.sleep(2)
    stop(loop)
    stop(sniffer)
    records = read_jsonl(loop_log)
    res = outage(records, t_fault)
    adverts = [a for a in read_jsonl(sniff_log) if a["src"] == pair.addresses[victim]]
    prio0 = [a for a in adverts if a["priority"] == 0 and a["t"] >= t_fault]
    last_ok_old = max((r["done"] for r in records if r["ok"] and r["url"] == url and r["mac"] == pair.macs[victim]),
                      default=None)
    first_ok_new = min((r["done"] for r in records if r["ok"] and r["url"] == url and r["t"] >= t_fault
                        and r["mac"] == pair.macs[other]), default=None)
    with pair.vms[victim].serial_log.open(errors="replace") as fh:
        fh.seek(serial_before)
        order = stop_order(fh.read())
    rec = {"run": run, "settings": settings, "node": victim, "vip": vip, **res,
           "keepalived_after": after_units.strip(), "keepalived_ordered_after_haproxy_and_network": ordered,
           "priority0_adverts": len(prio0),
           "priority0_after_poweroff_ms": round((prio0[0]["t"] - t_fault) * 1000) if prio0 else None,
           "last_success_old_node_ms": round((last_ok_old - t_fault) * 1000) if last_ok_old else None,
           "first_success_new_node_ms": round((first_ok_new - t_fault) * 1000) if first_ok_new else None,
           # from the node's resignation (its first priority-0 advert on the wire) to the first answer
           # from the other node: the handover itself, without the guest's own slow way to stopping
           "resign_to_first_success_ms": round((first_ok_new - prio0[0]["t"]) * 1000) if prio0 and first_ok_new else None,
           "failed_started_before_resign": sum(1 for r in records if not r["ok"] and prio0 and r["done"] >= t_fault
                                               and r["t"] < prio0[0]["t"]),
           "stop_order": order}
    pair.log(f"shutdown #{run}: failed {res['failed_requests']}/{res['requests']}, outage {res['outage_ms']} ms, "
             f"priority-0 adverts {len(prio0)} (first {rec['priority0_after_poweroff_ms']} ms after the command), "
             f"first success on {other} {rec['first_success_new_node_ms']} ms")
    pair.log(f"shutdown #{run}: serial console stop order: {order}")
    return rec


# ---------------------------------------------------------------------- upgrade
def _haproxy_pids(pair: Pair, node: str) -> tuple[str, str]:
    """(haproxy's master PID, its workers' PIDs) on the node."""
    main = pair.ssh(node, "systemctl show -p MainPID --value haproxy.service").stdout.strip()
    workers = pair.ssh(node, f"pgrep -P {main} -d, haproxy || true", check=False).stdout.strip()
    return main, workers


def _deb_version(deb: Path) -> str:
    return subproc.run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()


def upgrade_run(pair: Pair, debs: tuple[Path, Path], run: int, settings: str = "ours") -> dict:
    """`apt install ./<N+1>.deb` on the node that holds the first VIP, under the probe and a held
    keep-alive connection: haproxy must reload (same master PID, new workers), VIPs stay put.
    seed: then `systemctl restart haproxy`, the seed's way of putting a new config in place.
    debs: (N, N+1); the node gets N+1 unless it has it, then N (a downgrade runs the same scripts)."""
    held = pair.wait_vips_settled()
    vip = str(pair.site.vips[0].address)
    node = held[vip][0]
    before_version = pair.package_version(node)
    deb = debs[0] if before_version == _deb_version(debs[1]) else debs[1]
    subproc.run(["scp", "-F", str(pair.ssh_config), "-i", str(pair.key), "-o", "BatchMode=yes", str(deb),
                 f"debian@{pair.addresses[node]}:/tmp/{deb.name}"], timeout=120, context=f"scp {node}")
    main0, workers0 = _haproxy_pids(pair, node)
    ka0 = pair.ssh(node, "systemctl show -p MainPID --value keepalived.service").stdout.strip()
    loop_log = pair.work / f"upgrade-{settings}-{run}.jsonl"
    hold_log = pair.work / f"upgrade-{settings}-{run}.hold.jsonl"
    hold_log.unlink(missing_ok=True)
    loop = pair.start_loop(loop_log)
    holder = subproc.start(["ip", "netns", "exec", pair.client_ns, sys.executable, TOOLS, "hold", str(hold_log),
                            f"http://{vip}/"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    pair.procs.append(holder)
    pair.wait_successes(loop_log, 25)
    t0 = time.monotonic()
    res = pair.ssh(node, f"sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades /tmp/{deb.name}",
                   check=False, timeout=600)
    t1 = time.monotonic()
    pair.log(f"upgrade #{run}: {node}: apt-get install ./{deb.name} -> exit {res.returncode} in {t1 - t0:.1f} s")
    if res.returncode != 0:  # not an upgrade at all: no record (apt said why)
        stop(loop)
        stop(holder)
        raise UserError(f"{node}: apt-get install /tmp/{deb.name} failed ({res.returncode}): "
                        f"{(res.stdout or '').strip()[-1500:]} {(res.stderr or '').strip()[-1500:]}")
    if settings == "seed":
        pair.ssh(node, "sudo systemctl restart haproxy.service", timeout=120)
        t1 = time.monotonic()
        pair.log(f"upgrade #{run} (seed): {node}: systemctl restart haproxy")
    time.sleep(3)
    stop(loop)
    stop(holder)
    main1, workers1 = _haproxy_pids(pair, node)
    ka1 = pair.ssh(node, "systemctl show -p MainPID --value keepalived.service").stdout.strip()
    after_version = pair.package_version(node)
    held_after = pair.holders()
    records = read_jsonl(loop_log)
    out = outage(records, t0)
    # a VIP that went away and came back (a restart trips the haproxy watcher) is the same before and
    # after: the client's ARP entries during the run tell
    moves = {url: seq for url, seq in vip_moves([r for r in records if r["t"] >= t0 - 1], pair.macs).items()
             if len(seq) > 1}
    events = [e for e in read_jsonl(hold_log) if e["t"] >= t0 - 0.5]
    rec = {"run": run, "settings": settings, "node": node, **out, "apt_exit": res.returncode, "apt_s": round(t1 - t0, 1),
           "version_before": before_version, "version_after": after_version,
           "haproxy_master_pid": [main0, main1], "haproxy_workers": [workers0, workers1],
           "haproxy_restarted": main0 != main1, "haproxy_reloaded": workers0 != workers1,
           "keepalived_pid": [ka0, ka1], "vips_before": held, "vips_after": held_after,
           "vips_moved": held != held_after or bool(moves),
           "vip_moves_seen": {url: [(round(at - t0, 3), n) for at, n in seq] for url, seq in moves.items()},
           "long_lived_resets": sum(1 for e in events if e["event"] == "reset"),
           "long_lived_clean_closes": sum(1 for e in events if e["event"] == "closed"),
           "long_lived_requests": sum(1 for e in events if e["event"] in ("ok", "closed", "reset"))}
    pair.log(f"upgrade #{run}: {before_version} -> {after_version}; haproxy master {main0} -> {main1} "
             f"(workers {workers0} -> {workers1}), keepalived {ka0} -> {ka1}; VIPs {held} -> {held_after}; "
             f"failed {out['failed_requests']}/{out['requests']}; keep-alive connection: "
             f"{rec['long_lived_resets']} resets, {rec['long_lived_clean_closes']} clean closes")
    pair.log(f"upgrade #{run}: apt output tail: {res.stdout.strip()[-1500:]}")
    return rec


# ---------------------------------------------------------------------- rolling replace
def rolling_replace_run(pair: Pair, image_next: Path, run: int, drain_wait: int = 10, settings: str = "ours") -> dict:
    """docs/operations.md's rolling replacement of every node by an image N+1 VM, under the probe.
    seed: each node powered off with the seed's stop order, no drain."""
    held = pair.wait_vips_settled()
    masters = {n for h in held.values() for n in h}
    # nodes that hold no VIP first, then the holders, in inventory order
    order = [n.name for n in pair.site.nodes if n.name not in masters] + \
            [n.name for n in pair.site.nodes if n.name in masters]
    loop_log = pair.work / f"rolling-replace-{settings}-{run}.jsonl"
    loop = pair.start_loop(loop_log)
    pair.wait_successes(loop_log, 25)
    t0 = time.monotonic()
    pair.log(f"rolling-replace #{run} ({settings}): VIPs {held}; order {order}; image N+1 {image_next.name}")
    steps = []
    for node in order:
        s0 = time.monotonic()
        holds = [v for v, h in pair.holders().items() if node in h]
        if settings == "seed":
            seed_units(pair, node)
            pair.log(f"{node}: (seed) no drain; held {holds or 'no VIP'}")
        else:
            res = pair.ssh(node, f"sudo ha-ingress-proxy drain --wait {drain_wait}", check=False,
                           timeout=drain_wait + 600)  # python and sudo on a starved TCG guest: minutes
            pair.log(f"{node}: ha-ingress-proxy drain --wait {drain_wait} (held {holds or 'no VIP'}) -> exit "
                     f"{res.returncode}: {(res.stdout or '').strip()}")
            if res.returncode != 0:
                raise UserError(f"{node}: drain refused: {(res.stdout or '').strip()}")
            pair.log(f"{node}: status after drain: {json.dumps(pair.status(node).get('vrrp'))}, "
                     f"VIPs now {pair.holders()}")
        pair.poweroff(node)
        pair.boot(node, image_next)
        pair.wait_healthy(node)
        now = pair.wait_vips_settled()
        pair.log(f"{node}: replaced by an N+1 VM; VIPs now {now}")
        steps.append({"node": node, "held_before": holds, "seconds": round(time.monotonic() - s0, 1)})
    duration = time.monotonic() - t0
    time.sleep(2)
    stop(loop)
    records = read_jsonl(loop_log)
    res = outage(records, t0)
    moves = vip_moves([r for r in records if r["t"] >= t0 - 1], pair.macs)
    failed = [r for r in records if r["t"] >= t0 and not r["ok"]]
    for r in failed[:20]:
        pair.log(f"failed request at +{r['t'] - t0:.3f}s: {r['url']} {r['body']}")
    rec = {"run": run, "settings": settings, **res, "duration_s": round(duration, 1), "steps": steps,
           "vip_moves": {url: [{"t_s": round(t - t0, 3), "node": n} for t, n in seq] for url, seq in moves.items()},
           "versions": {n: pair.package_version(n) for n in pair.vms}}
    pair.log(f"rolling-replace #{run}: {res['failed_requests']} failed of {res['requests']} requests, "
             f"duration {duration:.0f} s; VIP moves {rec['vip_moves']}; versions {rec['versions']}")
    return rec


# ---------------------------------------------------------------------- steady
def _set_advert(pair: Pair, advert_int: float | None) -> None:
    """advert_int in every node's rendered keepalived.conf (None: the rendered file back), then a
    reload (SIGHUP: the VIPs stay)."""
    conf = f"/{layout.KEEPALIVED_CONF}"
    for node in pair.vms:
        if advert_int is None:
            edit = f"if [ -f {conf}.rendered ]; then sudo mv {conf}.rendered {conf}; fi"
        else:
            edit = (f"{{ [ -f {conf}.rendered ] || sudo cp -p {conf} {conf}.rendered; }} && "
                    f"sudo sed -E 's/^( *advert_int) .*/\\1 {advert_int:g}/' {conf}.rendered | sudo tee {conf} >/dev/null"
                    f" && sudo grep -q '^ *advert_int {advert_int:g}$' {conf}")
        pair.ssh(node, f"{edit} && sudo systemctl reload keepalived.service")


def _masters_since(pair: Pair, node: str, since: str) -> int:
    """keepalived's MASTER transitions on `node` since the guest's own epoch second `since`."""
    out = pair.ssh(node, f"sudo journalctl -u keepalived.service --since=@{since} --no-pager -o cat", check=False).stdout
    return sum(1 for line in out.splitlines() if "Entering MASTER STATE" in line)


def steady_run(pair: Pair, run: int, seconds: float = STEADY_SECONDS, advert_int: float | None = None) -> dict:
    """No fault for `seconds` with every node's CPU saturated: false failovers (MASTER transitions on
    any node, VIP moves seen by the client) and failed requests."""
    _set_advert(pair, advert_int)
    held = pair.wait_vips_settled()
    since = {n: pair.ssh(n, "date +%s").stdout.strip() for n in pair.vms}
    hogs = [subproc.start(pair.ssh_argv(n, f"timeout {seconds:.0f} sh -c 'while :; do :; done'"),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for n in pair.vms]
    pair.procs.extend(hogs)
    loop_log = pair.work / f"steady-{run}.jsonl"
    loop = pair.start_loop(loop_log)
    t0 = time.monotonic()
    pair.log(f"steady #{run}: {seconds:.0f} s, a busy loop on every node, advert_int "
             f"{advert_int if advert_int is not None else 'as rendered'}; VIPs {held}")
    time.sleep(seconds)
    stop(loop)
    for h in hogs:
        stop(h)
    records = read_jsonl(loop_log)
    res = outage(records, t0)
    moves = vip_moves([r for r in records if r["t"] >= t0], pair.macs)
    masters = {n: _masters_since(pair, n, since[n]) for n in pair.vms}
    moved = sum(max(0, len(seq) - 1) for seq in moves.values())
    _set_advert(pair, None)
    rec = {"run": run, "settings": "ours" if advert_int is None else f"ours-advert{advert_int:g}", **res,
           "seconds": seconds, "advert_int": advert_int,
           "master_transitions": masters, "false_failovers": sum(masters.values()) + moved, "client_vip_moves": moved,
           "vips_after": pair.holders()}
    pair.log(f"steady #{run}: false failovers {rec['false_failovers']} (MASTER transitions {masters}, VIP moves "
             f"seen by the client {moved}); failed {res['failed_requests']}/{res['requests']}")
    return rec


# ---------------------------------------------------------------------- the bench
def _one(pair: Pair, scenario: str, settings: str, run: int, image_next: Path | None, this_deb: Path | None,
         next_deb: Path | None, advert_int: float | None = None, steady_seconds: float = STEADY_SECONDS) -> dict:
    if scenario == "shutdown":
        return shutdown_run(pair, run, settings=settings)
    if scenario == "upgrade":
        return upgrade_run(pair, (this_deb, next_deb), run, settings)
    if scenario == "steady":
        return steady_run(pair, run, steady_seconds, advert_int)
    return rolling_replace_run(pair, image_next, run, settings=settings)


def _summary(values: list[float]) -> dict:
    import statistics

    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def vm_bench(inventory_path: Path, out: Path, scenarios: tuple[str, ...], runs: int, image: Path,
             image_next: Path | None, accelerator: str = "", debs: tuple[Path, Path] | None = None,
             settings: tuple[str, ...] = ("ours",), advert_ints: tuple[float, ...] = (),
             probe_timeout: float = PROBE_TIMEOUT, steady_seconds: float = STEADY_SECONDS) -> list[dict]:
    """Boot the pair from `image`, run each scenario `runs` times under each of `settings`, write the
    records (failover.json shape, merged by (mode, scenario, settings)) and the raw runs; rolling-replace
    needs image_next, upgrade the .debs (N, N+1): installs alternate N+1 and N (a downgrade, the same scripts)."""
    site = inventory.load(inventory_path)
    unknown = [s for s in scenarios if s not in VM_SCENARIOS]
    if unknown:
        raise UserError(f"not a VM-pair scenario: {', '.join(unknown)} (known: {', '.join(VM_SCENARIOS)})")
    bad = [s for s in settings if s not in VM_SETTINGS]
    if bad:
        raise UserError(f"not VM-pair settings: {', '.join(bad)} (known: {', '.join(VM_SETTINGS)})")
    if "rolling-replace" in scenarios and image_next is None:
        raise UserError("rolling-replace needs an image N+1 (--next-image PATH, or let it bake one)")
    if "upgrade" in scenarios and not debs:
        raise UserError("upgrade needs the .deb of version N and N+1")
    this_deb, next_deb = debs or (None, None)
    accel = accelerator or bake.detect_accelerator()
    bench_dir = out / "bench"
    log = Log(bench_dir / ("rolling-replace.log" if "rolling-replace" in scenarios else
                           f"vm-pair-{'-'.join(scenarios)}.log"))
    log(f"VM pair: site {site.site} ({site.mode}), image N {image}, accelerator {accel}, scenarios {scenarios}, "
        f"settings {settings}, runs {runs}, probe timeout {probe_timeout} s")
    records, raw = [], []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tag = uuid.uuid4().hex[:5]
    with Pair(site, out / "vm-pair" / f"{time.strftime('%Y%m%dT%H%M%S')}-{tag}", accel, log=log, tag=tag,
              probe_timeout=probe_timeout) as pair:
        _boot_all(pair, image)
        # steady measures our settings only (the seed's 1 s adverts are not the question there),
        # once per advert interval asked for (none: as rendered)
        plan = [(scenario, setting, advert) for scenario in scenarios for setting in settings
                for advert in ((advert_ints or (None,)) if scenario == "steady" else (None,))
                if scenario != "steady" or setting == "ours"]
        for scenario, setting, advert_int in plan:
            samples = []
            for i in range(runs):
                try:
                    _recover(pair)  # every node up and healthy (a shutdown run leaves one off)
                    rec = _one(pair, scenario, setting, i, image_next, this_deb, next_deb, advert_int,
                               steady_seconds)
                except Exception as exc:  # noqa: BLE001 - logged; the next scenario still runs
                    lines = exc.lines if isinstance(exc, UserError) else [repr(exc), traceback.format_exc()]
                    log(f"{scenario} ({setting}) #{i}: FAILED: {' '.join(lines)[:3000]}")
                    break
                if scenario == "rolling-replace":
                    image_next, image = image, image_next  # the next run goes back: N+1 -> N
                samples.append(rec)
                raw.append({"mode": site.mode, "scenario": scenario, "where": "vm-pair",
                            "accelerator": accel, "started": started, **rec})
                _merge(bench_dir / "vm-runs.json", raw, keep=lambda r: r.get("started") != started)
            if samples:
                label = setting if advert_int is None else f"{setting}-advert{advert_int:g}"
                records.append(_record(site.mode, scenario, label, accel, samples) | {"probe_timeout_s": probe_timeout})
                key = lambda r: (r.get("mode"), r.get("scenario"), r.get("settings"))  # noqa: E731
                done = {key(r) for r in records}
                _merge(bench_dir / "failover.json", records, keep=lambda r: key(r) not in done)
                log(f"record: {json.dumps(records[-1])}")
    return records


def _boot_all(pair: Pair, image: Path) -> None:
    """Boot every node from `image` and wait until all are healthy (in parallel: a boot is minutes)."""
    for node in (n.name for n in pair.site.nodes):
        pair.boot(node, image)
    errors: list[str] = []

    def healthy(node: str) -> None:
        try:
            pair.wait_healthy(node)
        except Exception as exc:  # noqa: BLE001 - reported below, from the main thread
            errors.append(f"{node}: {exc}")

    threads = [threading.Thread(target=healthy, args=(n.name,), daemon=True) for n in pair.site.nodes]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):  # joins with a timeout: Ctrl-C / SIGTERM get through
        time.sleep(1)
    if errors:
        raise UserError(*errors)


def _recover(pair: Pair) -> None:
    """Before each run: every node's VM up and its status healthy. A VM that is off (a shutdown
    run) is booted again from its disk; one that runs but is not healthy after wait_healthy's own
    agent restart is power-cycled."""
    for node, vm in list(pair.vms.items()):
        if vm.proc.poll() is None:
            if pair.healthy(pair.status(node)):
                continue
            try:
                vm.proc.wait(120)  # a poweroff under way finishes first
            except subprocess.TimeoutExpired:
                pair.log(f"{node}: running but not healthy: {json.dumps(pair.status(node))[:300]}; power-cycling it")
                vm.stop(timeout=10)
        pair.restart(node)
        pair.wait_healthy(node)


def _record(mode: str, scenario: str, settings: str, accel: str, samples: list[dict]) -> dict:
    """The failover.json record of one (scenario, settings): DESIGN's shape, min/median/max over the runs."""
    entry = {"mode": mode, "scenario": scenario, "settings": settings, "runs": len(samples),
             "where": "vm-pair", "accelerator": accel,
             "outage_ms": _summary([r["outage_ms"] for r in samples]),
             "failed_requests": _summary([r["failed_requests"] for r in samples]),
             "requests": _summary([r["requests"] for r in samples]),
             "recovered": sum(1 for r in samples if r["recovered"])}
    if scenario == "rolling-replace":
        entry["duration_s"] = _summary([r["duration_s"] for r in samples])
    if scenario == "upgrade":
        entry["long_lived_resets"] = _summary([r["long_lived_resets"] for r in samples])
        entry["haproxy_restarts"] = sum(1 for r in samples if r["haproxy_restarted"])
        entry["vip_moves"] = sum(1 for r in samples if r["vips_moved"])
    if scenario == "steady":
        entry["false_failovers"] = sum(r["false_failovers"] for r in samples)
        entry["advert_int"] = samples[0]["advert_int"]
        entry["seconds"] = samples[0]["seconds"]
    if scenario == "shutdown":
        entry["priority0_adverts"] = _summary([r["priority0_adverts"] for r in samples])
        handovers = [r["resign_to_first_success_ms"] for r in samples if r.get("resign_to_first_success_ms") is not None]
        if handovers:
            entry["resign_to_first_success_ms"] = _summary(handovers)
    return entry


def _merge(path: Path, new: list[dict], keep: Callable[[dict], bool]) -> None:
    """Write the records of `path` that keep() keeps, then `new`."""
    try:
        old = json.loads(path.read_text())
        old = old if isinstance(old, list) else []
    except (OSError, ValueError):
        old = []
    rows = [r for r in old if keep(r)] + new
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=2) + "\n")
    tmp.replace(path)


def images(inventory_path: Path, out: Path, image: Path | None, image_next: Path | None,
           need_next: bool, next_release: int = 2) -> tuple[Path, Path | None]:
    """Image N and N+1: the ones given, else baked (pipeline.build_image) under <out>/vm-images/<mode>/
    (N, release 1) and .../next/ (N+1: the package with release `next_release`); each reuses the
    base image of <out>/base when it has none and is itself reused while its stamp matches."""
    import shutil

    from ha_ingress_build import pipeline

    site = inventory.load(inventory_path)
    root = out / "vm-images" / site.mode
    made = []
    for where, given, release, wanted in ((root, image, 1, True), (root / "next", image_next, next_release, need_next)):
        if given is not None or not wanted:
            made.append(Path(given).resolve() if given else None)
            continue
        if not (where / "base" / "debian-12.qcow2").exists() and (out / "base" / "debian-12.qcow2").exists():
            shutil.copytree(out / "base", where / "base", dirs_exist_ok=True)
        made.append(Path(str(pipeline.build_image(inventory_path, where, release=release)["image"])))
    for p in made:
        if p is not None and not p.is_file():
            raise UserError(f"{p}: no such image")
    return made[0], made[1]


def debs(inventory_path: Path, out: Path, next_release: int = 2) -> tuple[Path, Path]:
    """The .deb of version N (release 1, what the image holds) and N+1 (release next_release),
    built under <out>/vm-debs/ (pipeline.build_deb: seconds)."""
    from ha_ingress_build import pipeline

    return (pipeline.build_deb(inventory_path, out / "vm-debs" / "n", 1).path,
            pipeline.build_deb(inventory_path, out / "vm-debs" / "n1", next_release).path)
