"""The BGP lab (mode: bgp): a router namespace running FRR with ECMP and BFD, FRR in each node, a client behind the router.

    client (<prefix>-c, 10.78.0.2) -- router (<prefix>-r: bridge br0 10.77.0.1/24, FRR bgpd+bfdd,
                                       maximum-paths 16, multipath-relax, 5-tuple hash) -- node i
                                       (<prefix>-n<i>, 10.77.0.1<i>: FRR with the rendered frr.conf,
                                       a real haproxy answering on the VIP with its own name, the
                                       bgp-gate in a thread)

The nodes' FRR config is the rendered frr.conf of a lab inventory (bgp_site()), applied with
`vtysh -N <pathspace> -f`; each namespace's FRR runs in its own pathspace (/run/frr/<ns>),
so nothing under /etc/frr is touched. VIPs sit on lo (this machine's kernel has no dummy
interface module; on a node the gate uses hip0). Every process is started through
subproc.start and stopped by PID; namespaces honour HIP_LAB_PREFIX (default `hil`, + `b`).
No nginx clusters: each node's haproxy answers itself, with the node's name, so a probe
record says which node served it. The client probe loop (netns_lab.start_probe) runs here
too; the scenarios measured with it and `invoke bench --bgp` are in bgp_scenarios.py.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from subprocess import DEVNULL, Popen

from ha_ingress_lab.netns_lab import PREFIX, Probe, UpDown, netns_list, start_probe, stop_proc
from ha_ingress_proxy import inventory, layout, render
from ha_ingress_proxy.agent import bgp_gate, drain, haproxy_api, status
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.plan import plan
from ha_ingress_proxy.subproc import run, start

FRR = Path("/usr/lib/frr")
ROUTER, CLIENT = "10.77.0.1", "10.78.0.2"
ROUTER_CONF = """frr defaults datacenter
bfd
 profile hip
  receive-interval {interval}
  transmit-interval {interval}
  detect-multiplier {mult}
 exit
exit
router bgp 65000
 bgp router-id 10.77.0.1
 bgp bestpath as-path multipath-relax
 neighbor PROXIES peer-group
 neighbor PROXIES remote-as {asn}
 neighbor PROXIES bfd profile hip
{neighbors} address-family ipv4 unicast
  maximum-paths 16
 exit-address-family
exit
"""
# The frontend is named like the site's service (drain counts its streams by that name); hip_drain is the
# rendered config's drain flag (http-after-response: the answer comes from `http-request return`); the stats
# listener on the node's address is what `drain` asks of the other nodes (stats.bind: node).
HAPROXY_CFG = """global
    stats socket {sock} level admin
    stats socket {status_sock} level user
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 10s
frontend http
    bind {vip}:80
    http-request return status 200 content-type text/plain string "{name}\\n"
    http-after-response set-header Connection close if {{ nbsrv(hip_drain) ge 1 }}
backend hip_drain
    server on 127.0.0.1:9 disabled
listen stats
    bind {address}:{stats_port}
    stats enable
"""


def bgp_site(n: int = 2, vip: str = "203.0.113.10", more_vips: tuple[str, ...] = (),
             more_peers: tuple[str, ...] = ()) -> inventory.Site:
    """The lab's inventory: examples/bgp.yaml with n nodes on 10.77.0.0/24 and the lab router as the one peer
    (more_peers: configured peers that do not exist, whose sessions never come up; the first VIP is haproxy's)."""
    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "bgp.yaml").read_text())
    data["nodes"] = [{"name": f"n{i}", "address": f"10.77.0.{10 + i}"} for i in range(1, n + 1)]
    data["vips"] = [{"address": v} for v in (vip, *more_vips)]
    data["clusters"] = [{"name": "k8s-1", "endpoint": "10.77.0.200"}]
    data["bgp"]["peers"] = [{"address": a, "asn": 65000} for a in (ROUTER, *more_peers)]
    data["stats"]["bind"] = "node"  # drain asks the other nodes' haproxy (its stats listener) before it withdraws
    return inventory.validate(data, "bgp-lab")


# next-hop ids far above zebra's (it numbers its own from 1, groups from 1000 up)
RESILIENT_TABLE, RESILIENT_GROUP, RESILIENT_NH = "100", "99000", 90000
RESILIENT = ("type", "resilient", "buckets", "128", "idle_timer", "5", "unbalanced_timer", "0")


class BgpLab(UpDown):
    """started: the nodes brought up by up() (default: all); the router is configured for every node of the
    site, so start_node() on another one later is a node joining.

    resilient: the router forwards the VIP by a kernel *resilient* next-hop group (128 buckets; a bucket moves
    to a new next hop only after 5 s idle, never by force), the way a router with resilient ECMP hashing does.
    FRR cannot install BGP's multipath routes as one (zebra makes plain groups), so a thread mirrors the set of
    next hops FRR installed in the main table into the group, and an `ip rule` sends the VIP's traffic to
    table 100 where it is routed by the group. The mirror polls every 20 ms: a change reaches forwarding up to
    one poll (and an `ip` call) later than with the plain route. Only for the bench's comparison."""

    def __init__(self, site: inventory.Site, prefix: str = PREFIX + "b", started: tuple[str, ...] | None = None,
                 resilient: bool = False) -> None:
        self.site, self.prefix, self.resilient = site, prefix, resilient
        self._mirror: tuple[threading.Event, threading.Thread] | None = None
        self.started = tuple(n.name for n in site.nodes) if started is None else started
        self.procs: dict[str, list[Popen]] = {}
        self.extra: list[Popen] = []  # client-side processes (the probe), stopped by PID at down()
        self.gates: dict[str, tuple[threading.Event, threading.Thread, bgp_gate.Gate]] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-lab-"))
        self.log: list[str] = []  # the gates' lines: "<CLOCK_MONOTONIC s> <node> <line>"

    # ---- names
    def ns(self, member: str) -> str:
        return f"{self.prefix}-{member}"

    def vtysh(self, member: str) -> list[str]:
        return ["vtysh", "-N", self.ns(member)]

    def nsexec(self, member: str, argv: list[str], check: bool = True, timeout: float = 20):
        return run(["ip", "netns", "exec", self.ns(member), *argv], check=check, timeout=timeout)

    # ---- life cycle
    def up(self) -> None:
        members = ["r", "c", *self.started]
        for m in members:
            run(["ip", "netns", "add", self.ns(m)])
            run(["ip", "-n", self.ns(m), "link", "set", "lo", "up"])
        r = self.ns("r")
        # A fixed MAC: a bridge takes its lowest port's address otherwise, so a joining node's veth could change
        # the router's MAC under n1 and n2 (their ARP entries then point nowhere until they re-resolve: seconds
        # of lost BFD, BGP and client traffic, seen in node-join runs of the bench)
        run(["ip", "-n", r, "link", "add", "br0", "address", "02:00:0a:4d:00:01", "type", "bridge"])
        run(["ip", "-n", r, "addr", "add", f"{ROUTER}/24", "dev", "br0"])
        run(["ip", "-n", r, "link", "set", "br0", "up"])
        self.nsexec("r", ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"])
        self._veth("c", "rc", "c0")
        run(["ip", "-n", r, "addr", "add", "10.78.0.1/24", "dev", "rc"])
        run(["ip", "-n", self.ns("c"), "addr", "add", f"{CLIENT}/24", "dev", "c0"])
        run(["ip", "-n", self.ns("c"), "route", "add", "default", "via", "10.78.0.1"])
        b = self.site.bgp
        neighbors = "".join(f" neighbor {n.address} peer-group PROXIES\n" for n in self.site.nodes)
        self._frr("r", ROUTER_CONF.format(interval=b.bfd_interval_ms, mult=b.bfd_multiplier, asn=b.asn, neighbors=neighbors))
        for name in self.started:
            self.start_node(name)
        if self.resilient:
            self._start_mirror(self.site.vips[0].address)

    def _start_mirror(self, vip: str) -> None:
        r = self.ns("r")
        run(["ip", "-n", r, "rule", "add", "to", f"{vip}/32", "lookup", RESILIENT_TABLE, "priority", "100"])
        stop = threading.Event()

        def mirror() -> None:
            last: list[str] | None = None
            group = False
            while not stop.is_set():
                try:
                    hops = self.paths(vip)
                    if hops != last:
                        if hops:
                            ids = [str(RESILIENT_NH + int(h.rsplit(".", 1)[1])) for h in hops]
                            for nid, hop in zip(ids, hops):
                                run(["ip", "-n", r, "nexthop", "replace", "id", nid, "via", hop, "dev", "br0"])
                            run(["ip", "-n", r, "nexthop", "replace" if group else "add", "id", RESILIENT_GROUP,
                                 "group", "/".join(ids), *RESILIENT])
                            group = True
                            run(["ip", "-n", r, "route", "replace", f"{vip}/32", "nhid", RESILIENT_GROUP,
                                 "table", RESILIENT_TABLE])
                        else:
                            run(["ip", "-n", r, "route", "del", f"{vip}/32", "table", RESILIENT_TABLE], check=False)
                        last = hops
                except Exception as exc:  # noqa: BLE001 - the lab went down under it: say so, stop mirroring
                    self.log.append(f"{time.monotonic():.3f} router resilient mirror stopped: {exc}")
                    return
                stop.wait(0.02)

        thread = threading.Thread(target=mirror, daemon=True)
        thread.start()
        self._mirror = (stop, thread)

    def _veth(self, member: str, router_end: str, member_end: str, bridge: bool = False) -> None:
        run(["ip", "link", "add", f"{self.prefix}x", "type", "veth", "peer", "name", f"{self.prefix}y"])
        run(["ip", "link", "set", f"{self.prefix}x", "netns", self.ns("r"), "name", router_end])
        run(["ip", "link", "set", f"{self.prefix}y", "netns", self.ns(member), "name", member_end])
        run(["ip", "-n", self.ns("r"), "link", "set", router_end, "up"])
        run(["ip", "-n", self.ns(member), "link", "set", member_end, "up"])
        if bridge:
            run(["ip", "-n", self.ns("r"), "link", "set", router_end, "master", "br0"])

    def _frr(self, member: str, conf: str) -> None:
        ns = self.ns(member)
        rundir = Path("/run/frr") / ns
        rundir.mkdir(parents=True, exist_ok=True)
        shutil.chown(rundir, "frr", "frr")
        procs = self.procs.setdefault(member, [])
        # One at a time, as frrinit/watchfrr do: zebra first, then bfdd, then bgpd. Started together, bgpd
        # could register its BFD sessions before bfdd had joined zebra, and that registration was lost
        # (no BFD peer on the node, ever: seen in CI and here about one run in three).
        for daemon in ("zebra", "bfdd", "bgpd"):
            procs.append(start(["ip", "netns", "exec", ns, str(FRR / daemon), "-N", ns, "-u", "frr", "-g", "frr"],
                               stdout=DEVNULL, stderr=DEVNULL))
            deadline = time.monotonic() + 15
            while not (rundir / f"{daemon}.vty").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{ns}: FRR's {daemon} did not open its vty socket")
                time.sleep(0.05)
        path = self.tmp / f"{member}-frr.conf"
        path.write_text(conf)
        run([*self.vtysh(member), "-f", str(path)])

    def start_node(self, name: str) -> None:
        node = self.site.node(name)
        if not any(self.ns(name) == ns for ns in self.netns()):
            run(["ip", "netns", "add", self.ns(name)])
            run(["ip", "-n", self.ns(name), "link", "set", "lo", "up"])
        self._veth(name, f"v{name}", "lab0", bridge=True)
        run(["ip", "-n", self.ns(name), "addr", "add", f"{node.address}/24", "dev", "lab0"])
        run(["ip", "-n", self.ns(name), "route", "add", "default", "via", ROUTER])
        tree = render.render_node(self.site, name)
        self._frr(name, tree[layout.FRR_CONF].content.decode())
        view = replace(plan(self.site, name).bgp, vip_interface="lo")  # no dummy module on this kernel
        self.nsexec(name, ["ip", "link", "set", "lo", "up"])
        for vip in view.vips:
            self.nsexec(name, ["ip", "addr", "replace", vip, "dev", "lo"])
        self.start_haproxy(name)
        self.start_gate(name)

    def root(self, name: str) -> Path:
        """The node's --root for the agent's drain/status: drain file, drain.json, haproxy's admin socket."""
        return self.tmp / name

    def sock(self, name: str) -> Path:
        return self.root(name) / layout.HAPROXY_SOCKET

    def start_gate(self, name: str) -> None:
        """The node's bgp-gate, in a thread (stopped by down()); it honours the node's drain file."""
        view = replace(plan(self.site, name).bgp, vip_interface="lo")  # no dummy module on this kernel
        (self.root(name) / layout.DRAIN_FILE).parent.mkdir(parents=True, exist_ok=True)
        stop = threading.Event()
        gate = bgp_gate.Gate(view, self.vtysh(name), self.sock(name), self.root(name) / layout.DRAIN_FILE,
                             lambda line: self.log.append(f"{time.monotonic():.3f} {name} {line}"))
        thread = threading.Thread(target=bgp_gate.loop, args=(gate, stop.is_set), daemon=True)
        thread.start()
        self.gates[name] = (stop, thread, gate)

    def peer_check(self, name: str):
        """drain's peer check as it runs on node `name`: a TCP connect to the other node's stats listener, from
        inside `name`'s namespace (this test process lives outside every lab namespace)."""
        def check(site: inventory.Site, node: inventory.Node) -> bool:
            code = f"import socket; socket.create_connection(({node.address!r}, {site.stats.port}), timeout=2).close()"
            return self.nsexec(name, ["python3", "-c", code], check=False).returncode == 0
        return check

    def drain(self, name: str, **kw) -> drain.Outcome:
        """`ha-ingress-proxy drain` on node `name` (mode bgp): drain_bgp with the lab's root, vtysh and peer check."""
        kw.setdefault("peer_check", self.peer_check(name))
        return drain.drain_bgp(self.root(name), self.site, name, vtysh=self.vtysh(name), **kw)

    def resume(self, name: str, **kw) -> drain.Outcome:
        return drain.resume_bgp(self.root(name), self.site, name, vtysh=self.vtysh(name), **kw)

    def status(self, name: str) -> tuple[dict, list[str]]:
        """`ha-ingress-proxy status`'s bgp part on node `name`: (the report's "bgp" and "drain" objects, its lines)."""
        root = self.root(name)
        bgp = status.bgp_report(root, self.site, name, vtysh=self.vtysh(name))
        dr = {"drained": drain.read_flag(root) != 0, "file": layout.shown(layout.DRAIN_FILE), "info": drain.read_info(root)}
        return {"bgp": bgp, "drain": dr}, status.bgp_lines(bgp, dr)

    def start_haproxy(self, name: str) -> None:
        cfg = self.tmp / f"{name}-haproxy.cfg"
        vip = self.site.vips[0].address
        self.sock(name).parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(HAPROXY_CFG.format(sock=self.sock(name), status_sock=self.root(name) / layout.STATUS_SOCKET, vip=vip,
                                          name=name, address=self.site.node(name).address, stats_port=self.site.stats.port))
        self.procs.setdefault(name, []).append(
            start(["ip", "netns", "exec", self.ns(name), "haproxy", "-db", "-f", str(cfg)], stdout=DEVNULL, stderr=DEVNULL))

    def kill_haproxy(self, name: str) -> None:
        for p in list(self.procs.get(name, [])):
            if "haproxy" in p.args:
                p.kill()
                p.wait()
                self.procs[name].remove(p)

    def kill_node(self, name: str) -> None:
        """The node goes silent, as a powered-off host does: every packet in and out dropped (nftables in its
        namespace), its gate stopped without a withdraw. No FIN, no RST, no carrier loss: only BFD (or, without
        it, the BGP hold time) can tell the router. Its processes are stopped by PID at down()."""
        rules = ("table inet hip_lab_dead { chain i { type filter hook input priority -300; policy drop; }; "
                 "chain o { type filter hook output priority -300; policy drop; }; }")
        # silent first, then the gate stopped: stopped first, a gate in the middle of a re-announce could still
        # send its withdraw-on-exit before the rules were in (a clean withdraw, not a death; seen once in 5 runs)
        run(["ip", "netns", "exec", self.ns(name), "nft", rules])
        stop, thread, gate = self.gates.pop(name)
        gate.announced = False  # a dead node sends no withdraw
        stop.set()
        thread.join(5)

    def netns(self) -> list[str]:
        # netns_lab's text listing: `ip -j netns list` adds "Error: Peer netns reference is invalid." lines
        # (stderr, merged) while another session deletes a namespace, and the JSON no longer parses
        return netns_list()

    def paths(self, vip: str) -> list[str]:
        """The router's next hops for the VIP (its kernel route: what ECMP forwards by)."""
        routes = json.loads(run(["ip", "-n", self.ns("r"), "-j", "route", "show", f"{vip}/32"]).stdout or "[]")
        hops: list[str] = []
        for route in routes:
            if "gateway" in route:
                hops.append(route["gateway"])
            hops += [h["gateway"] for h in route.get("nexthops", []) if "gateway" in h]
        return sorted(hops)

    def wait_paths(self, vip: str, want: int, timeout: float = 30, step: float = 0.1) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            hops = self.paths(vip)
            if len(hops) == want or time.monotonic() > deadline:
                return hops
            time.sleep(step)

    def bfd_up(self) -> list[str]:
        """The peers the router's BFD sessions see up."""
        out = run([*self.vtysh("r"), "-c", "show bfd peers json"]).stdout
        peers = json.loads(out[out.index("["):]) if "[" in out else []
        return sorted(p["peer"] for p in peers if p.get("status") == "up")

    def wait_bfd(self, want: int, timeout: float = 30) -> list[str]:
        """BGP registers a BFD session only once it is established, and bfdd brings it up seconds later."""
        deadline = time.monotonic() + timeout
        while True:
            up = self.bfd_up()
            if len(up) >= want or time.monotonic() > deadline:
                return up
            time.sleep(0.2)

    def fetch(self, vip: str, port: int) -> str:
        """One HTTP request from the client, from a chosen source port (so the 5-tuple hash varies)."""
        proc = self.nsexec("c", ["curl", "-s", "--max-time", "2", "--local-port", str(port), f"http://{vip}/"], check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def probe(self, targets: list[str] | None = None, interval: float = 0.02, timeout: float = 0.3) -> Probe:
        """The client probe loop (a new connection, so a new source port and hash, per request) on the VIP's
        port 80; stop it with .stop() to get the records, whose `cluster` field is the node that answered."""
        return start_probe(self, self.ns("c"), self.tmp, self.tmp / "client-probe.log",
                           targets or [f"{self.site.vips[0].address}:80:http"], interval, timeout)

    def frontend_counts(self, name: str) -> dict[str, int]:
        """The node's haproxy counters (stats socket `show stat`) summed over its frontends but the stats
        listener's: requests and connections so far."""
        rows = [r for r in haproxy_api.stat_rows(self.sock(name))
                if r.get("svname") == "FRONTEND" and r.get("pxname") not in haproxy_api.EXCLUDED_PROXIES]
        return {"requests": sum(int(r.get("req_tot") or 0) for r in rows),
                "connections": sum(int(r.get("conn_tot") or 0) for r in rows)}

    def down(self) -> None:
        if self._mirror is not None:
            self._mirror[0].set()
            self._mirror[1].join(5)
            self._mirror = None
        for proc in self.extra:
            stop_proc(proc, 1.0)
        self.extra.clear()
        for stop, thread, _ in self.gates.values():
            stop.set()
            thread.join(5)
        self.gates.clear()
        for procs in self.procs.values():
            for p in procs:
                stop_proc(p)
        self.procs.clear()
        for ns in self.netns():
            if ns.startswith(self.prefix + "-"):
                run(["ip", "netns", "del", ns], check=False)
        for d in Path("/run/frr").glob(f"{self.prefix}-*"):
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


class PathWatch:
    """The router's next hops for a VIP, polled in a thread. changes: (not before, not after, hops) at every
    change (monotonic; the change happened between the previous poll's start and this poll's end)."""

    def __init__(self, lab: BgpLab, vip: str, every: float = 0.02) -> None:
        self.changes: list[tuple[float, float, list[str]]] = []
        self._stop = threading.Event()

        def poll() -> None:
            last, prev = None, time.monotonic()
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    hops = lab.paths(vip)
                except UserError:  # the lab went down under it (a failed test): stop watching
                    return
                if hops != last:
                    self.changes.append((prev, time.monotonic(), hops))
                    last = hops
                prev = began
                time.sleep(every)
        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def stop(self) -> list[tuple[float, float, list[str]]]:
        self._stop.set()
        self._thread.join(5)
        return self.changes


# --------------------------------------------------------------------------- fixtures for the agent's unit tests

def capture_frr(dest: Path) -> list[str]:
    """Real vtysh output for tests/agent (frr.py parses it): node n1's answers to frr.commands() in three states.

    announced: n1 announces both VIPs to the router (Established, BFD up); its second configured peer 10.77.0.2
    does not exist (never Established). withdrawn: the same after n1 was drained. frr-down: FRR stopped.
    Writes <dest>/<state>.out (stdout and stderr, as subproc.run merges them), <dest>/<state>.rc and
    <dest>/commands.json. Run as root: `python -m ha_ingress_lab.bgp_lab DEST`."""
    from ha_ingress_proxy.agent import frr

    site = bgp_site(2, more_vips=("203.0.113.11",), more_peers=("10.77.0.2",))
    peers = [p.address for p in site.bgp.peers]
    asked = frr.commands(peers)
    dest.mkdir(parents=True, exist_ok=True)

    def save(lab: BgpLab, state: str) -> None:
        argv = [*lab.vtysh("n1")]
        for c in asked:
            argv += ["-c", c]
        proc = run(argv, check=False)
        (dest / f"{state}.out").write_text(proc.stdout or "")
        (dest / f"{state}.rc").write_text(f"{proc.returncode}\n")

    with BgpLab(site) as lab:
        lab.wait_paths(site.vips[0].address, 2, 60)
        lab.wait_bfd(2, 60)
        deadline = time.monotonic() + 30  # n1's own BFD session to the router up too
        while '"status":"up"' not in run([*lab.vtysh("n1"), "-c", "show bfd peers json"]).stdout:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        save(lab, "announced")
        lab.drain("n1", wait=0)
        save(lab, "withdrawn")
        for p in lab.procs["n1"]:
            if any(str(a).endswith(("bgpd", "bfdd", "zebra")) for a in p.args):
                stop_proc(p)
        save(lab, "frr-down")
    (dest / "commands.json").write_text(json.dumps({"peers": peers, "commands": asked}, indent=1) + "\n")
    return asked


if __name__ == "__main__":
    import sys

    capture_frr(Path(sys.argv[1]))
