"""Failure scenarios on a running lab, each measured by the client probe loop.

Every scenario brings the lab into a known state, starts the probe (a request
to every VIP/port every 20 ms, short timeouts), injects its fault, waits for the
outcome, stops the probe and returns a Result: what happened to the VIPs, the
outage (fault to first success after the last failure, ms) and the failed
requests. Tests assert the behaviour; `invoke bench --failover` aggregates the
numbers. Scenario names are a contract (the bench records name them; docs/lab.md):

steady, node-death, haproxy-death, keepalived-stop, failback, failback-late-arp, cluster-down,
cluster-blackhole, all-clusters-down, cluster-drain, ingress-restart, flapping-cluster, split-brain; and the day-2 operations drain and reload
(docs/operations.md), which also hold one HTTP keep-alive connection and one
TLS-passthrough stream open and count their resets (`long_lived_resets`), and
which run the seed's way under the seed's settings (a keepalived stop instead
of drain, a restart instead of a reload); and rogue-vrrp (a stranger on the segment sends
priority-255 adverts for a VIP's router id; no fault is injected into the tier,
so every VIP move it causes is a false failover).

Each scenario is one function registered under its name with @scenario; `run`
looks it up. A new scenario is one more registered function (SCENARIOS, the
order the benchmark reports in, is the order of registration).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ha_ingress_lab.netns_lab import HAPROXY_DOWN, Lab, kill_pids, outage, stop_proc
from ha_ingress_proxy import layout
from ha_ingress_proxy.subproc import require_tool, start


@dataclass
class Result:
    scenario: str
    outage_ms: float
    failed_requests: int
    requests: int
    recovered: bool
    before: dict  # VIP -> holders before the fault
    after: dict  # VIP -> holders at the end
    notes: dict = field(default_factory=dict)
    results: list = field(default_factory=list, repr=False)  # raw probe records

    def record(self) -> dict:
        return {"scenario": self.scenario, "outage_ms": self.outage_ms, "failed_requests": self.failed_requests,
                "requests": self.requests, "recovered": self.recovered, "before": self.before,
                "after": self.after, **self.notes}


def _timing(lab: Lab) -> dict[str, float]:
    """How long this lab's settings can take to notice things (for waits, not for asserts)."""
    v = lab.site.vrrp
    master_down = 3 * v.advert_int + 1.0
    check = v.check_interval * (v.check_fall + 1) + 1.0
    inter = lab.site.health.inter
    sec = float(inter[:-2]) / 1000 if inter.endswith("ms") else float(inter.rstrip("s"))
    health = sec * (lab.site.health.fall + 1) + 2.0
    return {"master_down": master_down, "check": check, "health": health, "settle": max(0.5, 2 * v.advert_int)}


def _victim(lab: Lab) -> tuple[str, str, str]:
    """(VIP, its master, the node that takes it over) for the first VIP."""
    vip = lab.site.vips[0].address
    master = lab.masters()[vip]
    holders = lab.vip_holders()[vip]
    node = holders[0] if holders else master
    others = [n.name for n in lab.site.nodes if n.name != node]
    return vip, node, others[0]


def _until(cond, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def prepare(lab: Lab) -> dict:
    """Every VIP on its master, adverts flowing: the state every scenario starts from."""
    lab.wait_vips(lab.masters(), timeout=20)
    time.sleep(_timing(lab)["settle"])
    return lab.vip_holders()


@dataclass
class _Run:
    """One scenario run: the lab in its prepared state, its timings, the VIP under test, and the probe."""

    lab: Lab
    name: str
    timeout: float
    post: float
    t: dict[str, float]  # _timing(lab)
    vip: str
    master: str  # holds vip before the fault
    backup: str  # takes it over
    before: dict  # VIP -> holders when the measured part starts
    probe: Any = None
    t_fault: float = 0.0
    t_fault_wall: float = 0.0  # the same instant by the wall clock (time.time()): the daemons' logs use it
    settings: str = "ours"  # the day-2 scenarios operate the seed's way under "seed"
    duration: float | None = None  # how long a repeated operation goes on (reload), None: its default

    @classmethod
    def begin(cls, lab: Lab, name: str, timeout: float, post: float, settings: str = "ours",
              duration: float | None = None) -> _Run:
        t = _timing(lab)
        before = prepare(lab)
        vip, master, backup = _victim(lab)
        return cls(lab, name, timeout, post, t, vip, master, backup, before, settings=settings, duration=duration)

    def start(self, targets: list[str] | None = None) -> None:
        """Start the probe, then mark the fault time: what the scenario does next is measured."""
        self.probe = self.lab.probe(self.lab.targets() if targets is None else targets, timeout=self.timeout)
        time.sleep(0.5)  # ARP warm, a baseline of successes
        self.mark_fault()

    def mark_fault(self) -> None:
        self.t_fault = time.monotonic()
        self.t_fault_wall = time.time()

    def vip_moves_to(self, node: str, timeout: float) -> bool:
        """Wait until the VIP under test is on `node` alone; False when it is not within timeout."""
        return _until(lambda: self.lab.vip_holders()[self.vip] == [node], timeout)

    def finish(self, notes: dict | None = None, *, post: float | None = None, ok=None) -> Result:
        """Probe `post` seconds more (default: the run's), stop the probe, and sum up the outage.

        ok(record) decides what counts as a success (default: the request succeeded).
        """
        time.sleep(self.post if post is None else post)
        # fault_at: wall-clock time of the fault (UTC, ms), to find the failures in the lab's logs
        # (logs/<node>-haproxy.log: haproxy's line per request, kept when the lab goes down)
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.t_fault_wall)) + f".{int(self.t_fault_wall % 1 * 1000):03d}Z"
        return summarise(self.name, self.probe.stop(), self.t_fault, self.before, self.lab.vip_holders(),
                         {"fault_at": at, **(notes or {})}, ok, timeout=self.timeout)

    def finish_after_health_checks(self, notes: dict | None = None, ok=None) -> tuple[Result, list]:
        """Wait until haproxy's checks have marked what is down (inter * fall), probe one more second,
        finish; returns the Result and the probe records of that last second."""
        time.sleep(self.t["health"])
        t_mark = time.monotonic()
        time.sleep(1.0)
        res = self.finish(notes, post=0, ok=ok)
        return res, [r for r in res.results if r[0] >= t_mark]


def summarise(name: str, res: list, t_fault: float, before: dict, after: dict, notes: dict | None = None,
              ok=None, timeout: float | None = None) -> Result:
    """A scenario's Result from its probe records: the outage after t_fault, the failed requests (and per
    target, and when they happened; with the probe's timeout, of which kind). Shared by the VRRP
    scenarios and the BGP ones (bgp_scenarios.py)."""
    o = outage(res, t_fault, None, ok)
    is_ok = ok or (lambda r: bool(r[3]))
    failed = [r for r in res if r[1] >= t_fault and not is_ok(r)]
    notes = dict(notes or {})
    if failed:
        by: dict = {}
        for r in failed:
            by[r[2]] = by.get(r[2], 0) + 1
        notes["failed_by_target"] = dict(sorted(by.items()))
        notes["failures_ms_after_fault"] = [round((failed[0][0] - t_fault) * 1000),
                                            round((failed[-1][0] - t_fault) * 1000)]
        if timeout is not None:
            # timeout: no answer within the probe's timeout; late timeout: the probe noticed its timeout more
            # than 50 ms late, so the client itself was not running (a starved machine: the request may well
            # have been answered meanwhile); status N: an HTTP answer other than 200 (haproxy's 502/503...);
            # error: a fast failure (reset, refused, TLS alert, closed without an answer), the kind that
            # points at a real gap rather than at load
            kinds: dict = {}
            for rec in failed:
                took = rec[1] - rec[0]
                kind = (f"status {rec[4]}" if rec[4] else "late timeout" if took > timeout + 0.05
                        else "timeout" if took >= 0.95 * timeout else "error")
                kinds[kind] = kinds.get(kind, 0) + 1
            notes["failed_kinds"] = dict(sorted(kinds.items()))
        notes["failures"] = [[round((rec[0] - t_fault) * 1000), round((rec[1] - rec[0]) * 1000), rec[2],
                              f"status {rec[4]}" if rec[4] else "no answer"] for rec in failed[:40]]
    return Result(name, o["outage_ms"], o["failed_requests"], o["requests"], o["recovered"], before, after, notes, res)


REGISTRY: dict[str, Callable[[_Run], Result]] = {}


def scenario(name: str, registry: dict | None = None) -> Callable[[Callable], Callable]:
    """Register a scenario function under its name (in REGISTRY, or another mode's registry)."""
    where = REGISTRY if registry is None else registry

    def register(fn: Callable) -> Callable:
        if name in where:
            raise ValueError(f"scenario {name!r} registered twice")
        where[name] = fn
        return fn

    return register


@scenario("steady")
def _steady(r: _Run) -> Result:
    """No fault: every target answers, and each is spread over the clusters.

    false_failovers: keepalived MASTER transitions during the run (there is no fault, so any is false)."""
    mark = r.lab.keepalived_log_mark()
    r.start()
    time.sleep(2.0)
    res = r.finish(post=0)
    res.notes["false_failovers"] = len(r.lab.keepalived_events(mark))
    per_vip: dict = {}
    for rec in res.results:
        if rec[3]:
            per_vip.setdefault(rec[2], set()).add(rec[5])
    res.notes["clusters_per_target"] = {k: sorted(v) for k, v in sorted(per_vip.items())}
    return res


@scenario("node-death")
def _node_death(r: _Run) -> Result:
    """The VIP's master dies (every process, its links down); the backup takes the VIP."""
    r.start()
    r.lab.kill_node(r.master, at_fault=r.mark_fault)  # the fault is the link going down, not the /proc walk before it
    moved = r.vip_moves_to(r.backup, r.t["master_down"] + 5)
    return r.finish({"victim": r.master, "moved": moved})


# What put the master's VRRP instances in FAULT, as keepalived logs it (--log-detail):
# the watcher's track_file (plan.HAPROXY_TRACK) or the polling check (chk_haproxy).
FAULT_MARKS = {"watcher": "tracked file hip_haproxy now FAULT", "check": "VRRP_Script(chk_haproxy) failed"}


def fault_causes(lab: Lab, node: str, mark: dict[str, int]) -> list[str]:
    """Which trackers put `node` in FAULT since `mark`, in the order keepalived logged them."""
    lines = [line for line in lab.keepalived_events(mark, "") if line.startswith(f"{node}: ")]
    out: list[str] = []
    for line in lines:
        for cause, text in FAULT_MARKS.items():
            if text in line and cause not in out:
                out.append(cause)
    return out


@scenario("haproxy-death")
def _haproxy_death(r: _Run) -> Result:
    """haproxy is killed on the master (SIGKILL, master and worker); the watcher's track_file
    (or, without it, keepalived's polling check) puts the node in FAULT and the VIP moves.
    fault_by: the trackers that reported the death, first first (keepalived's log); watcher_ms: from
    the kill to the watcher's file saying 1 (its mtime)."""
    r.start()
    # The check script runs every check_interval from keepalived's start: a fault at a
    # fixed delay after start would always hit the same phase. Spread it over one interval.
    time.sleep(random.uniform(0, r.lab.site.vrrp.check_interval))
    mark = r.lab.keepalived_log_mark()
    flag = r.lab.node_path(r.master, HAPROXY_DOWN)
    # haproxy's processes first: a /proc walk takes 0.1 s and more on a loaded machine, and
    # the fault is the kill, not the walk before it.
    pids = r.lab.daemon_pids(r.master, "haproxy")
    r.mark_fault()
    t_wall = time.time()
    kill_pids(pids, signal.SIGKILL)
    r.lab.reap(r.master, "haproxy")  # as systemd would at once: a zombie still has /proc/<pid>/comm
    moved = r.vip_moves_to(r.backup, r.t["check"] + r.t["master_down"] + 5)
    notes = {"victim": r.master, "moved": moved, "killed_pids": pids}
    try:
        if flag.read_text().strip() == "1":  # the watcher's word, written (renamed into place) when the master exited
            notes["watcher_ms"] = round((flag.stat().st_mtime_ns / 1e9 - t_wall) * 1000, 1)
    except OSError:
        pass
    res = r.finish(notes)
    res.notes["fault_by"] = fault_causes(r.lab, r.master, mark)
    return res


@scenario("keepalived-stop")
def _keepalived_stop(r: _Run) -> Result:
    """keepalived stops cleanly on the master (priority 0 advert); the backup takes over at once."""
    r.start()
    r.lab.kill_daemon(r.master, "keepalived", signal.SIGTERM)
    moved = r.vip_moves_to(r.backup, r.t["master_down"] + 5)
    r.lab.reap(r.master, "keepalived")
    return r.finish({"victim": r.master, "moved": moved})


@scenario("failback")
def _failback(r: _Run) -> Result:
    """The master dies (not measured), the backup takes over; then the master returns (measured)."""
    r.lab.kill_node(r.master)
    r.lab.wait_vips({r.vip: r.backup}, timeout=r.t["master_down"] + 10)
    time.sleep(r.t["settle"] + 0.5)
    r.before = r.lab.vip_holders()
    r.start()
    r.lab.revive_node(r.master)
    if r.lab.site.vrrp.preempt:
        back = r.vip_moves_to(r.master, r.t["master_down"] + 5)
        time.sleep(0.5)
    else:
        # nopreempt: the VIP must stay where it is; give it several master-down intervals to misbehave.
        time.sleep(max(2.0, 2 * r.t["master_down"]))
        back = r.lab.vip_holders()[r.vip] == [r.master]
    return r.finish({"returned": r.master, "vip_moved_back": back})


# How long the client of the VM pair kept sending to the old holder after a failback moved the VIP
# (docs/operations.md): its first answer from the new master came ~0.5 s after the move.
LATE_ARP = 0.5


@scenario("failback-late-arp")
def _failback_late_arp(r: _Run) -> Result:
    """failback, with a client whose ARP entry changes late: until LATE_ARP s after the VIP left the old
    holder (the returning master preempted it) the client's entry still says the old holder's MAC (a
    permanent entry, which gratuitous ARP does not change), then it asks ARP again. What the old holder
    does with those packets is measured: keepalived's notify_backup keeps the VIP local there for a grace."""
    lab = r.lab
    lab.kill_node(r.master)
    lab.wait_vips({r.vip: r.backup}, timeout=r.t["master_down"] + 10)
    time.sleep(r.t["settle"] + 0.5)
    r.before = lab.vip_holders()
    lab.pin_client_arp(r.vip, r.backup)
    left = released = None
    try:
        r.start()
        lab.revive_node(r.master)
        if _until(lambda: r.backup not in lab.vip_holders()[r.vip], r.t["master_down"] + 10, step=0.01):
            left = time.monotonic()
            time.sleep(max(0.0, LATE_ARP - (time.monotonic() - left)))
    finally:
        lab.unpin_client_arp(r.vip)
        released = time.monotonic()
    back = r.vip_moves_to(r.master, r.t["master_down"] + 5)
    time.sleep(0.5)
    notes = {"returned": r.master, "vip_moved_back": back, "late_arp_s": LATE_ARP}
    if left is not None:
        notes["move_ms_after_fault"] = round((left - r.t_fault) * 1000)
    res = r.finish(notes)
    if left is not None:
        # What the grace is for, apart from the revival's load on the whole run: requests to the moved VIP
        # started while the client still sent to the old holder (from just before the VIP left it until the
        # client's entry was released) that failed; with a grace, at most those in flight at the release.
        res.notes["failed_at_move"] = sum(1 for rec in res.results if rec[2].startswith(f"{r.vip}:")
                                          and left - 0.1 <= rec[0] <= released and not rec[3])
    return res


@scenario("cluster-down")
def _cluster_down(r: _Run) -> Result:
    """One cluster stops (its ingress refuses connections: RST); once haproxy marks it DOWN, only
    the other one must answer."""
    return _one_cluster_fails(r, r.lab.stop_cluster, r.t["health"] + 5)


@scenario("cluster-blackhole")
def _cluster_blackhole(r: _Run) -> Result:
    """One cluster stops answering at all (a host powered off, a link or a firewall dropping: no RST,
    so every connection to it waits `timeout connect`); once haproxy marks it DOWN, only the other
    one must answer. Its checks time out instead of failing at once: the watch is longer."""
    return _one_cluster_fails(r, r.lab.blackhole_cluster, 2 * r.t["health"] + 5)


def _one_cluster_fails(r: _Run, fault: Callable[[str], None], limit: float) -> Result:
    """The first cluster fails by `fault(name)`; cluster_out_ms is when every node has it out of rotation
    (None: not within `limit` s), tail_clusters who answered in the last second, tail_failed its failures."""
    down, other = r.lab.site.clusters[0].name, r.lab.site.clusters[1].name
    r.start()
    fault(down)
    out_ms = _watch_out(r, down, limit)
    res, tail = r.finish_after_health_checks({"down": down, "other": other, "cluster_out_ms": out_ms})
    res.notes["tail_clusters"] = sorted({rec[5] for rec in tail if rec[3]})
    res.notes["tail_failed"] = sum(1 for rec in tail if not rec[3])
    return res


def _watch_out(r: _Run, cluster: str, limit: float) -> float | None:
    """ms from the fault until every node's haproxy has `cluster` out of rotation (None: not within limit)."""
    if _until(lambda: r.lab.cluster_down_everywhere(cluster), limit, step=0.01):
        return round((time.monotonic() - r.t_fault) * 1000, 1)
    return None


@scenario("all-clusters-down")
def _all_clusters_down(r: _Run) -> Result:
    """Every cluster stops: the clear answer is a prompt 503 on the HTTP port."""
    r.start(r.lab.targets((80,)))
    for cl in r.lab.site.clusters:
        r.lab.stop_cluster(cl.name)
    # "success" here is any prompt answer within the timeout: a 503, or a 200 from a request a cluster
    # finished before it stopped (those were served; counting them as failures inflated the figure).
    res, tail = r.finish_after_health_checks(ok=lambda rec: rec[4] in (200, 503))
    res.notes["tail_statuses"] = sorted({rec[4] for rec in tail})
    res.notes["tail_max_ms"] = round(max((rec[1] - rec[0]) for rec in tail) * 1000, 1) if tail else None
    return res


class ArpWatch:
    """Samples the client's neighbour entries for the VIPs (`ip -j neigh`) in a thread: the MAC address
    each VIP resolves to, over time. A change of MAC is an ARP flip (the client now sends that VIP's
    traffic to another node)."""

    def __init__(self, lab: Lab, vips: list[str], step: float = 0.02) -> None:
        self.lab, self.vips, self.step = lab, vips, step
        self.samples: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _read(self) -> dict[str, str]:
        out = self.lab.ip(self.lab.members["client"].ns, "-j", "neigh", "show", "dev", "lab0", check=False).stdout
        try:
            entries = json.loads(out or "[]")
        except ValueError:
            return {}
        return {e["dst"]: e["lladdr"] for e in entries if e.get("dst") in self.vips and e.get("lladdr")}

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._read()))
            self._stop.wait(self.step)

    def start(self) -> ArpWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def flips(self, t0: float, t1: float) -> dict[str, int]:
        """Per VIP: how many times its MAC changed between t0 and t1 (the entry as of t0 is the start)."""
        out: dict[str, int] = {}
        for vip in self.vips:
            last, n = None, 0
            for t, seen in self.samples:
                mac = seen.get(vip)
                if mac is None:
                    continue
                if t >= t0 and t <= t1 and last is not None and mac != last:
                    n += 1
                if t <= t1:
                    last = mac
            out[vip] = n
        return out


@scenario("split-brain")
def _split_brain(r: _Run) -> Result:
    """VRRP between the nodes is cut (every node takes every VIP), then healed.

    arp_flips: the most times one VIP's MAC changed in the client's ARP table during the split
    (1 is the takeover by the node that became a second master; more is flapping).
    recovery_after_heal_ms: from the heal to service back for good (0: nothing failed after it)."""
    lab, limit = r.lab, r.t["master_down"] + 5
    watch = ArpWatch(lab, [v.address for v in lab.site.vips]).start()
    try:
        r.start()
        lab.split_vrrp(True)
        dup = _until(lambda: all(len(h) == len(lab.site.nodes) for h in lab.vip_holders().values()), limit)
        notes: dict = {"during_split": lab.vip_holders(), "duplicate_vips": dup}
        time.sleep(3.0)
        t_heal = time.monotonic()
        lab.split_vrrp(False)
        notes["healed"] = _until(lambda: all(len(h) == 1 for h in lab.vip_holders().values()), limit)
        notes["heal_ms"] = round((time.monotonic() - t_heal) * 1000, 1)
        res = r.finish(notes, post=max(r.post, 2.0))
    finally:
        watch.stop()
    flips = watch.flips(r.t_fault, t_heal)
    res.notes["arp_flips_by_vip"] = flips
    res.notes["arp_flips"] = max(flips.values()) if flips else 0
    res.notes["arp_flips_after_heal"] = watch.flips(t_heal, time.monotonic())
    res.notes["recovery_after_heal_ms"] = outage(res.results, t_heal)["outage_ms"]
    return res


@scenario("cluster-drain")
def _cluster_drain(r: _Run) -> Result:
    """One cluster's ingress drains: its /healthz fails, and its nginx stops 5 s later.
    The tier must have stopped sending to it by then: no request fails."""
    down, other = r.lab.site.clusters[0].name, r.lab.site.clusters[1].name
    r.start()
    r.lab.drain_cluster(down)
    out_ms = _watch_out(r, down, 5.0)
    time.sleep(max(0.0, 5.0 - (time.monotonic() - r.t_fault)))
    r.lab.stop_cluster(down)
    time.sleep(1.0)
    t_tail = time.monotonic()
    res = r.finish({"down": down, "other": other, "cluster_out_ms": out_ms})
    res.notes["tail_clusters"] = sorted({rec[5] for rec in res.results if rec[0] >= t_tail and rec[3]})
    return res


@scenario("ingress-restart")
def _ingress_restart(r: _Run) -> Result:
    """Every nginx worker of one cluster is replaced (graceful, on the same sockets): no request fails."""
    name = r.lab.site.clusters[0].name
    r.start()
    before = r.lab.nginx_workers(name)
    r.lab.restart_cluster_rolling(name)
    return r.finish({"restarted": name, "workers_before": len(before), "workers_after": len(r.lab.nginx_workers(name))},
                    post=max(r.post, 2.0))


FLAP_SECONDS = 30.0  # the flapping-cluster scenario: how long the cluster's /healthz flaps


@scenario("flapping-cluster")
def _flapping_cluster(r: _Run) -> Result:
    """One cluster's /healthz fails a random half of the checks for FLAP_SECONDS (its traffic still works).
    The tier must settle instead of swinging traffic to and fro, and the other cluster must stay in.

    state_changes: haproxy's UP<->DOWN transitions of the flapping cluster, summed over the nodes (from the
    stats counters: chkdown UP->DOWN, plus the DOWN->UP ones that followed); other_cluster_downs: the
    other cluster's UP->DOWN transitions (must be 0); last_change_ms: fault to the last transition seen
    (polled); in_rotation_share: share of the polls (all nodes) with the flapping cluster in rotation;
    traffic_share: share of the successful requests it answered."""
    lab = r.lab
    flap, other = lab.site.clusters[0].name, lab.site.clusters[1].name
    nodes = [n.name for n in lab.site.nodes]
    seconds = FLAP_SECONDS if r.duration is None else r.duration
    start = {n: lab.server_checks(n) for n in nodes}
    r.start()
    lab.flap_cluster(flap)
    polls: list[tuple[float, dict[str, bool]]] = []  # (time, node -> flapping cluster in rotation)
    deadline = r.t_fault + seconds
    while time.monotonic() < deadline:
        states = {n: lab.server_checks(n).get(flap, {}).get("status", "?") for n in nodes}
        polls.append((time.monotonic(), {n: st.startswith(("UP", "NOLB")) for n, st in states.items()}))
        time.sleep(0.05)
    end = {n: lab.server_checks(n) for n in nodes}
    lab.flap_cluster(flap, False)
    res = r.finish(post=0)

    def delta(n: str, sv: str, key: str) -> int:
        return end[n].get(sv, {}).get(key, 0) - start[n].get(sv, {}).get(key, 0)

    def changes(n: str) -> int:  # it starts UP: every DOWN but a last one came back UP
        ends_down = not end[n].get(flap, {}).get("status", "").startswith(("UP", "NOLB"))
        return max(0, 2 * delta(n, flap, "chkdown") - (1 if ends_down else 0))

    last = None
    for (t0, a), (t1, b) in zip(polls, polls[1:]):
        if a != b:
            last = t1
    in_rot = [v for _, s in polls for v in s.values()]
    ok = [rec for rec in res.results if rec[0] >= r.t_fault and rec[3]]
    res.notes.update({
        "flapping": flap, "other": other, "seconds": seconds,
        "state_changes": sum(changes(n) for n in nodes),
        "state_changes_by_node": {n: changes(n) for n in nodes},
        "failed_checks_while_up": sum(delta(n, flap, "chkfail") for n in nodes),  # haproxy counts chkfail only while UP
        "other_cluster_downs": sum(delta(n, other, "chkdown") for n in nodes),
        "other_always_in": all(lab.server_checks(n).get(other, {}).get("status", "").startswith("UP") for n in nodes)
        and not any(delta(n, other, "chkdown") for n in nodes),
        "last_change_ms": round((last - r.t_fault) * 1000) if last else 0,
        "in_rotation_share": round(sum(in_rot) / len(in_rot), 3) if in_rot else None,
        "traffic_share": round(sum(1 for rec in ok if rec[5] == flap) / len(ok), 3) if ok else None,
    })
    return res


DRAIN_WAIT = 2.0  # drain --wait in the bench: the held stream never ends, so drain waits this long
RELOAD_SECONDS = 60.0  # the reload scenario: one reload per second for this long


def _long_lived(held: dict) -> dict:
    """The held connections' counts as record fields: long_lived_resets is every reset of either."""
    http, tcp = held.get("http", {}), held.get("tcp", {})
    return {"long_lived_resets": http.get("resets", 0) + tcp.get("resets", 0),
            "keepalive_resets": http.get("resets", 0), "stream_resets": tcp.get("resets", 0),
            "keepalive_clean_closes": http.get("clean_closes", 0),
            "long_lived_exchanges": http.get("exchanges", 0) + tcp.get("exchanges", 0)}


@scenario("drain")
def _drain(r: _Run) -> Result:
    """A planned move of the master's VIPs. ours: `ha-ingress-proxy drain --wait 2` on the master
    (keep-alive closed first, then the move); seed: keepalived stopped on the master (its way)."""
    lab = r.lab
    for node in lab.site.nodes:
        lab.agent(node.name, "apply")
    held = lab.hold(r.vip, timeout=max(1.0, r.timeout))
    r.start()
    notes: dict = {"victim": r.master, "how": "drain" if r.settings != "seed" else "keepalived stop"}
    if r.settings == "seed":
        lab.kill_daemon(r.master, "keepalived", signal.SIGTERM)
        notes["moved"] = r.vip_moves_to(r.backup, r.t["master_down"] + 5)
        lab.reap(r.master, "keepalived")
    else:
        lab.agent(r.master, "drain", "--wait", f"{DRAIN_WAIT:g}")
        notes["moved"] = r.lab.vip_holders()[r.vip] == [r.backup]
        info = json.loads(lab.node_path(r.master, layout.shown(layout.DRAIN_INFO)).read_text())
        notes["streams_left_at_move"] = info.get("streams_left_at_move")
        notes["vip_left_ms"] = info.get("vip_left_ms")
        moved = info.get("moved_monotonic")
        if moved:
            notes["move_ms_after_fault"] = round((moved - r.t_fault) * 1000)
        notes["waited_s"] = info.get("waited_s")
    res = r.finish(notes)
    res.notes.update(_long_lived(held.stop()))
    return res


MIN_RELOADS = 3


@scenario("reload")
def _reload(r: _Run) -> Result:
    """One config reload per second on the master, for the duration and at least MIN_RELOADS times
    (a starved machine can take seconds per reload). ours: `ha-ingress-proxy reload` (haproxy -c,
    server state saved, SIGUSR2 to the master; SIGHUP to keepalived); seed: haproxy restarted."""
    lab = r.lab
    lab.agent(r.master, "apply")
    held = lab.hold(r.vip, timeout=max(1.0, r.timeout))
    r.start()
    seconds = RELOAD_SECONDS if r.duration is None else r.duration
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline or count < MIN_RELOADS:
        t0 = time.monotonic()
        if r.settings == "seed":
            lab.kill_daemon(r.master, "haproxy", signal.SIGTERM)  # systemctl restart: stop, then start
            lab.reap(r.master, "haproxy")
            lab.start_daemon(r.master, "haproxy")
            lab.wait_haproxy(r.master)
        else:
            lab.agent(r.master, "reload")
        count += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    notes = {"victim": r.master, "reloads": count, "seconds": seconds,
             "how": "restart" if r.settings == "seed" else "reload",
             "vip_stayed": lab.vip_holders()[r.vip] == [r.master]}
    res = r.finish(notes)
    res.notes.update(_long_lived(held.stop()))
    return res


ROGUE_PRIORITY = 255  # "the address owner": beats every priority a node can have


@scenario("rogue-vrrp")
def _rogue_vrrp(r: _Run) -> Result:
    """A stranger on the segment sends priority-255 adverts for the first VIP's router id
    (to the VRRP group and to every node), for several master-down intervals."""
    lab = r.lab
    rogue = lab.add_rogue()
    target = lab.site.vips[0]
    duration = max(3.0, 2 * r.t["master_down"])
    r.start()
    sampled = [lab.vip_holders()]
    proc = lab.start_rogue_adverts(rogue.name, target.router_id, [target.address], duration, ROGUE_PRIORITY)
    while proc.poll() is None:
        now = lab.vip_holders()
        if now != sampled[-1]:
            sampled.append(now)
        time.sleep(0.05)
    # the rogue is gone: give the tier its master-down interval to settle back
    _until(lambda: lab.vip_holders() == r.before, r.t["master_down"] + 5)
    moves = sum(1 for a, b in zip(sampled, sampled[1:]) for vip in a if a[vip] != b[vip])
    notes = {
        "rogue": rogue.address, "router_id": target.router_id, "vip": target.address, "priority": ROGUE_PRIORITY,
        "attack_s": duration, "false_failovers": moves, "vip_moves": moves, "holders_seen": sampled,
        "dropped_by_filter": sum(lab.firewall_drops(n.name).get("VRRP from a stranger", 0) for n in lab.site.nodes),
    }
    return r.finish(notes)


SCENARIOS = tuple(REGISTRY)


def saturated(lab: Lab, seconds: float, *, hog: bool = True, connections: int = 50) -> dict:
    """No fault, the tier's CPU saturated for `seconds`: wrk at full rate on every VIP's HTTP port from
    the client, and (hog) one busy loop per CPU in every node's namespace. Returns false_failovers
    (keepalived MASTER transitions: there is no fault, so every one is false), the transitions
    themselves, the VIP holders before and after, and wrk's request rate."""
    require_tool("wrk", "wrk")
    before = prepare(lab)
    mark = lab.keepalived_log_mark()
    procs = []
    client = lab.members["client"].ns
    port = 80 if any(s.port == 80 for s in lab.site.services) else lab.site.services[0].port
    logs = lab.workdir / "logs"
    outs = []
    try:
        for v in lab.site.vips:
            out = open(logs / f"wrk-{v.address}.log", "wb")
            outs.append(out)
            procs.append(start(["ip", "netns", "exec", client, "wrk", "-t1", f"-c{connections}",
                                f"-d{max(1, round(seconds))}s", f"http://{v.address}:{port}/"], stdout=out, stderr=out))
        if hog:
            for n in lab.site.nodes:
                for _ in range(os.cpu_count() or 1):
                    procs.append(start(["ip", "netns", "exec", lab.members[n.name].ns, "timeout", str(seconds + 5),
                                        "sh", "-c", "while :; do :; done"]))
        time.sleep(seconds)
        t_end = time.monotonic() + 10
        for p in procs[:len(lab.site.vips)]:  # wrk ends by itself
            while p.poll() is None and time.monotonic() < t_end:
                time.sleep(0.1)
    finally:
        for p in procs:
            stop_proc(p)
        for out in outs:
            out.close()
    time.sleep(0.5)
    events = lab.keepalived_events(mark)
    rps = []
    for v in lab.site.vips:
        m = re.search(r"Requests/sec:\s*([\d.]+)", (logs / f"wrk-{v.address}.log").read_text(errors="replace"))
        rps.append(float(m.group(1)) if m else 0.0)
    return {"seconds": seconds, "hog": hog, "false_failovers": len(events), "transitions": events,
            "before": before, "after": lab.vip_holders(), "vip_moved": lab.vip_holders() != before,
            "wrk_rps": round(sum(rps))}


def run(lab: Lab, scenario: str, *, timeout: float = 0.3, post: float = 1.0, settings: str = "ours",
        duration: float | None = None) -> Result:
    """Run one scenario on a fresh lab; returns its Result. settings: "seed" makes the day-2
    scenarios operate the seed's way; duration: how long reload goes on (default RELOAD_SECONDS)."""
    if scenario not in REGISTRY:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    return REGISTRY[scenario](_Run.begin(lab, scenario, timeout, post, settings, duration))
