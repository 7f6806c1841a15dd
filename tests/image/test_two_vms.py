"""End to end: the README's build-image -> three VMs from that one image -> an HA ingress tier.

1. pipeline.build_image(examples/active-active.yaml, build/) - the function `./invokew build-image`
   runs: render, lint, the real .deb, the Debian 12 base, the Packer bake. An image already in
   build/image is reused only when its stamp names this very package sha256, base sha256 and
   Packer/provisioning recipe (build_image decides that, not this test).
2. One L2 segment inside network namespaces this test creates: a bridge (namespace SEG, where
   the host side of SSH lives at .1), two stand-in clusters (namespaces K1, K2 at 192.168.1.4
   and .8, HTTP on 80 and TCP on 443, each answer names its cluster) and a client namespace
   (.100). Three VMs boot in parallel from overlays of the image, NoCloud seeds made by
   cloudinit.seeds(..., networks=...) + cloudinit.write_seeds: proxy-1 and proxy-2 get their
   node name in meta-data and a network-config that matches the NIC by MAC and renames it to
   the inventory's interface ens192; the third VM says ha_ingress_node: proxy-9 on an address
   no node has.
3. Checks with testinfra (paramiko backend; ProxyCommand `ip netns exec SEG python3
   netns_tools.py relay %h %p`, because the VMs are reachable from inside the namespace only),
   requests through both VIPs, power-off of proxy-1 (SIGKILL of its qemu, by PID: a real
   power cut, no VRRP goodbye) with a 20 ms client loop, and the refused VM.

Measurements (bake, boot-to-serving per VM, failover outage, total) go to build/bench/image.json.
Needs root, qemu, packer. Run: python3 -m pytest -m image -s tests/image/test_two_vms.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from conftest import REPO, need_root

from ha_ingress_build import bake, cloudinit, pipeline
from ha_ingress_lab import netns_tools, vm_pair
from ha_ingress_lab.vm import VM, NetNS, qemu_argv, serial_tail
from ha_ingress_proxy import inventory, layout, subproc
from ha_ingress_proxy.render import environment

pytestmark = pytest.mark.image

INVENTORY = REPO / "examples" / "active-active.yaml"
BUILD = REPO / "build"
BENCH = BUILD / "bench" / "image.json"
TOOLS = Path(netns_tools.__file__)
SOURCE = "tests/image/test_two_vms.py"
HOST_SIDE = "192.168.1.1"
CLIENT = "192.168.1.100"
ROGUE = ("proxy-9", "192.168.1.20")
MACS = {"proxy-1": "52:54:00:1e:00:09", "proxy-2": "52:54:00:1e:00:0b", "proxy-9": "52:54:00:1e:00:14"}
MEMORY_MIB = 1024
BOOT_TIMEOUT = 900.0
FAILOVER_INTERVAL = 0.02
FAILOVER_TIMEOUT = 0.2


def _bench_write(records: list[dict[str, object]]) -> None:
    """Replace this test's records in build/bench/image.json (a list), keep everyone else's."""
    BENCH.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = json.loads(BENCH.read_text())
        old = [r for r in old if isinstance(r, dict) and r.get("source") != SOURCE]
    except (OSError, ValueError):
        old = []
    BENCH.write_text(json.dumps(old + records, indent=2) + "\n")


@dataclass
class Lab:
    site: inventory.Site
    seg: NetNS
    client_ns: str
    key: Path
    ssh_config: Path
    accelerator: str
    workdir: Path
    vms: dict[str, VM] = field(default_factory=dict)
    loops: list[subprocess.Popen] = field(default_factory=list)
    servers: list[subprocess.Popen] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    records: list[dict[str, object]] = field(default_factory=list)
    started: float = 0.0

    def host(self, node: str):
        import testinfra

        # cloud-init's default (disable_root) keeps root out; its default user `debian` has sudo.
        return testinfra.get_host(f"paramiko://debian@{self.vms[node].address}", ssh_config=str(self.ssh_config),
                                  ssh_identity_file=str(self.key), sudo=True)

    def client(self, *args: str, timeout: float = 60) -> str:
        return subproc.run(["ip", "netns", "exec", self.client_ns, sys.executable, TOOLS, *args],
                          timeout=timeout, context="client").stdout

    def record(self, **rec: object) -> None:
        self.records.append({"source": SOURCE, "accelerator": self.accelerator, **rec})
        _bench_write(self.records)


def _veth_ns(seg: NetNS, name: str, cidr: str) -> str:
    """A namespace `name` with eth0 at `cidr`, its peer on seg's bridge: one more host on the segment."""
    subproc.run(["ip", "netns", "add", name])
    peer = f"v{name[-8:]}"[:15]
    seg.ip("link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", name)
    seg.ip("link", "set", peer, "master", seg.bridge, "up")
    for args in (["addr", "add", cidr, "dev", "eth0"], ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"]):
        subproc.run(["ip", "-n", name, *args])
    return name


def _seeds(site: inventory.Site, password: str, pub: str) -> list[cloudinit.Seed]:
    networks = {n.name: (MACS[n.name], 24) for n in site.nodes}
    made = cloudinit.seeds(site, "image", password, ssh_keys=(pub,), networks=networks)
    # The third VM: the same user-data (so the stats password is there), a node name the site
    # does not have, and an address that matches no node.
    name, address = ROGUE
    meta = f"instance-id: {site.site}-{name}\nlocal-hostname: {name}\nha_ingress_node: {name}\n"
    net = environment(cloudinit.TEMPLATES).get_template("network-config.j2").render(
        interface=site.interface, mac=MACS[name], address=address, prefix=24)
    return made + [replace(made[0], node=name, meta_data=meta, network_config=net)]


def _boot(lab: Lab, image_path: Path, node: str, seed_iso: Path, address: str) -> VM:
    """qemu on a new tap of the segment, disk = overlay of the image (never written), the seed as CD."""
    overlay = lab.workdir / f"{node}.qcow2"
    subproc.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image_path, overlay])
    tap = lab.seg.add_tap(f"tap-{node}")
    vm = VM(name=node, workdir=lab.workdir, address=address)
    argv = qemu_argv(vm, lab.accelerator, MEMORY_MIB, overlay, seed_iso, tap, MACS[node])
    log = open(lab.workdir / f"{node}.qemu.log", "wb")  # noqa: SIM115 - closed right after the start
    vm.started_at = time.monotonic()
    vm.proc = subproc.start(lab.seg.exec_argv(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    lab.vms[node] = vm
    return vm


def _wait_ssh(lab: Lab, node: str) -> float:
    vm = lab.vms[node]
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if vm.proc.poll() is not None:
            raise AssertionError(f"{node}: qemu exited ({vm.proc.returncode})\n{serial_tail(vm)}")
        try:
            if lab.host(node).run("true").rc == 0:
                return time.monotonic() - vm.started_at
        except Exception:  # noqa: BLE001 - not up yet (refused, reset, timeout)
            pass
        time.sleep(2)
    raise AssertionError(f"{node}: no SSH within {BOOT_TIMEOUT:.0f} s\n{serial_tail(vm, 80)}")


def _start_loop(lab: Lab, out: Path, urls: list[str], interval: float, timeout: float) -> subprocess.Popen:
    proc = subproc.start(["ip", "netns", "exec", lab.client_ns, sys.executable, TOOLS, "loop", out, *urls,
                         "--interval", str(interval), "--timeout", str(timeout)],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab.loops.append(proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    need_root()
    started = time.monotonic()
    work = tmp_path_factory.mktemp("two-vms")

    # 1. the README's build-image
    t0 = time.monotonic()
    made = pipeline.build_image(INVENTORY, BUILD)
    bake_s = time.monotonic() - t0
    image_path = Path(str(made["image"]))
    site = inventory.load(INVENTORY)
    accel = str(made["accelerator"]) or bake.detect_accelerator()  # empty when the bake was reused

    key = work / "id_ed25519"
    pub = bake.make_keypair(key, "ha-ingress-proxy-e2e")
    seeds = _seeds(site, cloudinit.generate_password(), pub)
    seed_dir = cloudinit.write_seeds(seeds, work / "seeds")

    tag = uuid.uuid4().hex[:6]
    seg = NetNS(name=f"hipe-{tag}", host_cidr=f"{HOST_SIDE}/24")
    ssh_config = work / "ssh_config"
    ssh_config.write_text(
        "Host 192.168.1.*\n  User debian\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
        f"  ProxyCommand ip netns exec {seg.name} {sys.executable} {TOOLS} relay %h %p\n")
    lab = Lab(site=site, seg=seg, client_ns=f"hipe-{tag}-cl", key=key, ssh_config=ssh_config,
              accelerator=accel, workdir=work, started=started)
    lab.record(scenario="build-image", seconds=round(bake_s, 1), reused=made["reused"],
               package_sha256=made["package_sha256"], steps=made["steps"])
    try:
        seg.create()
        lab.namespaces.append(seg.name)
        for cluster, ns in zip(site.clusters, (f"hipe-{tag}-k1", f"hipe-{tag}-k2")):
            lab.namespaces.append(_veth_ns(seg, ns, f"{cluster.endpoint}/24"))
            srv = subproc.start(["ip", "netns", "exec", ns, sys.executable, TOOLS, "serve", cluster.name,
                                cluster.endpoint], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            lab.servers.append(srv)
            assert srv.stdout.readline().strip() == b"ready"
        lab.namespaces.append(_veth_ns(seg, lab.client_ns, f"{CLIENT}/24"))

        # boot-to-serving: a client loop on both VIPs runs from before the first qemu starts
        boot_log = work / "boot-loop.jsonl"
        _start_loop(lab, boot_log, [f"http://{v.address}/" for v in site.vips], 0.1, 0.3)
        addresses = {n.name: n.address for n in site.nodes} | {ROGUE[0]: ROGUE[1]}
        for node in ("proxy-1", "proxy-2", ROGUE[0]):
            _boot(lab, image_path, node, seed_dir / node / "seed.iso", addresses[node])
        ssh_s = {}
        threads = [threading.Thread(target=lambda n=n: ssh_s.__setitem__(n, _wait_ssh(lab, n))) for n in lab.vms]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(ssh_s) == set(lab.vms), f"SSH came up on {sorted(ssh_s)} only"

        # serving: every VIP answered, and each proxy VM answered for at least one VIP
        proxies = [n.name for n in site.nodes]
        mac_of = {MACS[n]: n for n in proxies}
        deadline = time.monotonic() + 300
        first: dict[str, dict] = {}
        while time.monotonic() < deadline:
            for r in vm_pair.read_jsonl(boot_log):
                who = mac_of.get(r["mac"])
                if r["ok"] and who and who not in first:
                    first[who] = r
            if set(first) == set(proxies):
                break
            time.sleep(1)
        for node in proxies:
            vm = lab.vms[node]
            rec = first.get(node)
            lab.record(scenario="boot-to-serving", vm=node, parallel_vms=len(lab.vms), memory_mib=MEMORY_MIB,
                       boot_to_ssh_s=round(ssh_s[node], 1),
                       seconds=round(rec["t"] - vm.started_at, 1) if rec else None,
                       vip=rec["url"] if rec else None)
        yield lab
    finally:
        for proc in lab.loops + lab.servers:
            _stop(proc)
        for vm in lab.vms.values():
            vm.stop(timeout=10)
        for ns in reversed(lab.namespaces):
            subproc.run(["ip", "netns", "delete", ns], check=False)
        lab.record(scenario="e2e-total", seconds=round(time.monotonic() - started, 1), vms=len(lab.vms))
        print("\nbuild/bench/image.json records of this run:\n" + json.dumps(lab.records, indent=2))


def _vips_held(lab: Lab, node: str) -> set[str]:
    vips = {v.address for v in lab.site.vips}
    out = lab.host(node).check_output("ip -j -4 addr show dev %s", lab.site.interface)
    return {a["local"] for i in json.loads(out) for a in i.get("addr_info", [])} & vips


def test_image_units_manifest_and_seal(lab: Lab) -> None:
    """What the old placeholder smoke test checked, now on the real package (both proxy VMs)."""
    for node in ("proxy-1", "proxy-2"):
        host = lab.host(node)
        pkg = host.package("ha-ingress-proxy")
        assert pkg.is_installed
        for unit in ("haproxy", "keepalived", "ha-ingress-proxy-agent"):
            assert host.service(unit).is_enabled, (node, unit)
        manifest = json.loads(host.file("/usr/share/ha-ingress-proxy/image-manifest.json").content_string)
        assert manifest["package_version"] == pkg.version
        assert manifest["base"] == "debian-12"
        assert len(manifest["configs_sha256"]) == 64
        # every file the package ships (docs aside) is covered by the manifest's digest
        shipped = set(host.check_output(
            "dpkg -L ha-ingress-proxy | while read -r f; do [ -f \"$f\" ] && echo \"$f\"; done").split())
        shipped = {f for f in shipped if not f.startswith("/usr/share/doc/")}
        assert shipped - set(manifest["files"]) == set(), "package files the manifest leaves out"
        # the image's manifest list covers both modes' package files; only the other mode's may be missing
        family = "vrrp" if lab.site.mode.vrrp else "bgp"
        other_mode = {layout.shown(p.path) for p in layout.PATHS if p.only and p.only != family}
        assert set(manifest["missing_paths"]) <= other_mode, set(manifest["missing_paths"]) - other_mode
        assert "HAProxy version 2.6" in host.check_output("haproxy -v")
        # sealed: a machine-id of its own, fresh host keys, only this boot's key authorised
        assert len(host.file("/etc/machine-id").content_string.strip()) == 32
        assert host.file("/etc/ssh/ssh_host_ed25519_key").exists
        keys = host.file("/home/debian/.ssh/authorized_keys").content_string
        assert "ha-ingress-proxy-e2e" in keys and "ha-ingress-proxy-bake" not in keys
        assert "ha-ingress-proxy-bake" not in host.file("/root/.ssh/authorized_keys").content_string
        assert not host.file("/tmp/ha-ingress-proxy-pkgs").exists
        assert host.check_output("find /var/lib/apt/lists -name '*_Packages*'") == ""
    ids = {lab.host(n).file("/etc/machine-id").content_string for n in ("proxy-1", "proxy-2")}
    assert len(ids) == 2, "both VMs have the same machine-id: the image was not sealed"


@pytest.mark.parametrize("node", ["proxy-1", "proxy-2"])
def test_proxy_node(lab: Lab, node: str) -> None:
    host = lab.host(node)
    want = next(n for n in lab.site.nodes if n.name == node)
    # network-config: the NIC matched by MAC, renamed to the inventory's interface, node address on it
    nic = host.interface(lab.site.interface)
    assert nic.exists, host.check_output("ip -br link")
    assert host.file(f"/sys/class/net/{lab.site.interface}/address").content_string.strip() == MACS[node]
    assert f"{want.address}" in nic.addresses
    for unit in ("haproxy", "keepalived", "ha-ingress-proxy-agent"):
        svc = host.service(unit)
        assert svc.is_enabled and svc.is_running, (unit, host.run("systemctl status --no-pager %s", unit).stdout)
    # nothing failed on the way up (cloud-init's locale module once left cloud-config failed)
    failed = host.run("systemctl list-units --failed --plain --no-legend --no-pager").stdout.strip()
    assert not failed, failed
    secrets = host.file("/etc/ha-ingress-proxy/secrets.env")
    assert (secrets.mode, secrets.user, secrets.group) == (0o600, "root", "root")
    for path in ("/etc/ha-ingress-proxy/haproxy.cfg", "/etc/ha-ingress-proxy/keepalived.conf"):
        assert host.file(path).is_file, path
    assert host.sysctl("net.ipv4.ip_nonlocal_bind") == 1
    status = json.loads(host.check_output("ha-ingress-proxy status --json"))
    assert status["ok"] and status["result"] == "applied", status
    assert status["node"] == node
    print(f"\n{node}: ha-ingress-proxy status --json: source {status['source']!r}, where {status['where']!r}")
    assert "instance-data" in status["where"] and "meta_data.ha_ingress_node" in status["where"], status
    assert status["keepalived"]["running"], status
    assert status["haproxy_watch"]["value"] == 0, status  # watch-haproxy runs and has seen haproxy serve


def test_each_node_holds_its_own_vip(lab: Lab) -> None:
    held = {n: _vips_held(lab, n) for n in ("proxy-1", "proxy-2")}
    assert held == {"proxy-1": {"192.168.1.10"}, "proxy-2": {"192.168.1.12"}}, held


def test_both_vips_reach_both_clusters(lab: Lab) -> None:
    urls = [f"{scheme}://{v.address}/" for v in lab.site.vips for scheme in ("http", "tcp")]
    answers = [json.loads(line) for line in lab.client("probe", "6", *urls).splitlines()]
    for url in urls:
        got = [a for a in answers if a["url"] == url]
        assert all(a["ok"] for a in got), got
        assert {a["body"] for a in got} == {f"cluster {c.name}" for c in lab.site.clusters}, (url, got)


def test_refused_node_claims_nothing(lab: Lab) -> None:
    host = lab.host(ROGUE[0])
    assert not host.service("keepalived").is_running
    assert not host.service("haproxy").is_running
    agent = host.run("systemctl status --no-pager -l ha-ingress-proxy-agent")
    print(f"\n{ROGUE[0]}: systemctl status ha-ingress-proxy-agent:\n{agent.stdout}")
    assert host.run("systemctl is-failed ha-ingress-proxy-agent").stdout.strip() == "failed"
    assert "'proxy-9' is not a node of site dc1-ingress" in agent.stdout
    status = host.run("ha-ingress-proxy status")
    print(f"{ROGUE[0]}: ha-ingress-proxy status (exit {status.rc}):\n{status.stdout}")
    assert status.rc == 1 and "REFUSED" in status.stdout
    assert not host.file("/etc/ha-ingress-proxy/keepalived.conf").exists
    assert _vips_held(lab, ROGUE[0]) == set()
    lab.record(scenario="refused-node", vm=ROGUE[0], status=status.stdout.strip())


def _daemon_pids(host) -> tuple[str, set[str], str]:
    """(haproxy's master PID, its workers' PIDs, keepalived's PID) from systemd."""
    master = host.check_output("systemctl show -p MainPID --value haproxy.service")
    workers = set(host.run("pgrep -P %s haproxy", master).stdout.split())
    return master, workers, host.check_output("systemctl show -p MainPID --value keepalived.service")


def test_package_upgrade_reloads_haproxy_and_moves_no_vip(lab: Lab) -> None:
    """`apt-get install` of the N+1 .deb (release 2) on proxy-1 under a client loop on both VIPs:
    haproxy is reloaded (same master, new workers), never restarted; keepalived keeps running;
    no VIP moves (docs/operations.md "Package upgrade"). Failed requests go to image.json
    (`invoke bench --failover --scenario upgrade` measures it over runs)."""
    node = "proxy-1"
    host = lab.host(node)
    deb = pipeline.build_deb(INVENTORY, lab.workdir / "n1", 2).path
    version = subproc.run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()
    subproc.run(["scp", "-F", lab.ssh_config, "-i", lab.key, "-o", "BatchMode=yes", deb,
                 f"debian@{lab.vms[node].address}:/tmp/{deb.name}"], timeout=300, context=f"scp to {node}")
    held = {n: _vips_held(lab, n) for n in ("proxy-1", "proxy-2")}
    before = _daemon_pids(host)
    log = lab.workdir / "upgrade-loop.jsonl"
    loop = _start_loop(lab, log, [f"http://{v.address}/" for v in lab.site.vips], FAILOVER_INTERVAL, 1.0)
    deadline = time.monotonic() + 30
    while sum(r["ok"] for r in vm_pair.read_jsonl(log)) < 25 and time.monotonic() < deadline:
        time.sleep(0.2)
    t0 = time.monotonic()
    res = host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/%s", deb.name)
    took = time.monotonic() - t0
    time.sleep(2)
    _stop(loop)
    assert res.rc == 0, res.stdout + res.stderr
    assert host.check_output("dpkg-query -W -f '${Version}' ha-ingress-proxy") == version
    after = _daemon_pids(host)
    assert after[0] == before[0], f"haproxy was restarted (master {before[0]} -> {after[0]})"
    assert after[1] and after[1] != before[1], f"haproxy was not reloaded (workers {before[1]} -> {after[1]})"
    assert after[2] == before[2], f"keepalived was restarted ({before[2]} -> {after[2]})"
    assert {n: _vips_held(lab, n) for n in ("proxy-1", "proxy-2")} == held
    window = [r for r in vm_pair.read_jsonl(log) if r["done"] >= t0]
    failed = [r for r in window if not r["ok"]]
    lab.record(scenario="upgrade", vm=node, version=version, apt_s=round(took, 1), requests=len(window),
               failed_requests=len(failed), timeout_ms=1000)
    print(f"\nupgrade of {node} to {version}: apt {took:.0f} s, {len(failed)} failed of {len(window)} requests")


def test_power_off_master_backup_takes_over(lab: Lab) -> None:
    """SIGKILL proxy-1's qemu (a power cut: no VRRP priority-0 goodbye) under a 20 ms client loop on .10."""
    vip = lab.site.vips[0].address
    assert vip in _vips_held(lab, "proxy-1")
    log = lab.workdir / "failover-loop.jsonl"
    loop = _start_loop(lab, log, [f"http://{vip}/"], FAILOVER_INTERVAL, FAILOVER_TIMEOUT)
    deadline = time.monotonic() + 30
    while sum(r["ok"] for r in vm_pair.read_jsonl(log)) < 25 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sum(r["ok"] for r in vm_pair.read_jsonl(log)) >= 25, vm_pair.read_jsonl(log)[-5:]
    victim = lab.vms["proxy-1"]
    fault = time.monotonic()
    victim.proc.kill()  # the PID of qemu itself (ip netns exec execs it)
    victim.proc.wait(10)
    deadline = fault + 60
    back = None
    while back is None and time.monotonic() < deadline:
        time.sleep(0.2)
        back = next((r for r in vm_pair.read_jsonl(log) if r["t"] >= fault and r["ok"]), None)
    time.sleep(1)
    _stop(loop)
    records = vm_pair.read_jsonl(log)
    after = [r for r in records if r["t"] >= fault]
    assert back is not None, f"no success through {vip} within 60 s of the power-off: {after[-5:]}"
    outage_ms = (back["done"] - fault) * 1000
    failed = [r for r in after if not r["ok"] and r["t"] < back["t"]]
    assert back["mac"] == MACS["proxy-2"], back
    assert all(r["ok"] for r in after if r["t"] > back["t"]), "requests failed again after the takeover"
    assert _vips_held(lab, "proxy-2") == {v.address for v in lab.site.vips}
    lab.record(scenario="failover", fault="SIGKILL of proxy-1's qemu", vip=vip, interval_ms=FAILOVER_INTERVAL * 1000,
               timeout_ms=FAILOVER_TIMEOUT * 1000, outage_ms=round(outage_ms), failed_requests=len(failed),
               requests_after_fault=len(after))
    print(f"\nfailover: first success {outage_ms:.0f} ms after the power-off, {len(failed)} failed requests")


def test_poweroff_stops_keepalived_before_haproxy(lab: Lab) -> None:
    """`systemctl poweroff` of proxy-2 (after the power cut above it masters both VIPs): systemd stops
    keepalived (which resigns: priority 0) before it begins to stop haproxy and the network
    (docs/operations.md "Resign on shutdown"). The serial console shows the stop jobs in order.
    No peer is left to hear the priority-0 adverts here (they are unicast to proxy-1); the VM-pair
    bench's `shutdown` scenario sees them on the wire and counts failed requests under load."""
    node = "proxy-2"
    vm = lab.vms[node]
    assert vm.proc.poll() is None
    after = lab.host(node).check_output("systemctl show -p After keepalived.service").split("=", 1)[1].split()
    assert {"haproxy.service", "network-online.target"} <= set(after), after
    serial_at = vm.serial_log.stat().st_size
    try:
        lab.host(node).run("systemctl poweroff")
    except Exception:  # noqa: BLE001 - the shutdown may end the SSH session before the command returns
        pass
    vm.proc.wait(300)  # TCG on a busy machine: a shutdown can take minutes
    with vm.serial_log.open(errors="replace") as fh:
        fh.seek(serial_at)
        order = vm_pair.stop_order(fh.read())
    print(f"\n{node} poweroff, serial console: {order}")
    stopped_ka = next((i for i, line in enumerate(order) if line.startswith("Stopped") and "keepalived" in line), None)
    haproxy = next((i for i, line in enumerate(order) if "haproxy" in line.lower()), None)
    network = next((i for i, line in enumerate(order) if "network" in line.lower()), None)
    assert None not in (stopped_ka, haproxy), order
    assert stopped_ka < haproxy, f"haproxy began stopping before keepalived had stopped: {order}"
    assert network is None or stopped_ka < network, f"the network went down before keepalived stopped: {order}"
