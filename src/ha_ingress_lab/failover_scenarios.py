"""Failure scenarios on a running lab, each measured by the client probe loop.

Every scenario brings the lab into a known state, starts the probe (a request
to every VIP/port every 20 ms, short timeouts), injects its fault, waits for the
outcome, stops the probe and returns a Result: what happened to the VIPs, the
outage (fault to first success after the last failure, ms) and the failed
requests. Tests assert the behaviour; `invoke bench --failover` aggregates the
numbers. Scenario names are the DESIGN contract's:

steady, node-death, haproxy-death, keepalived-stop, failback, cluster-down,
all-clusters-down, split-brain.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass, field

from ha_ingress_lab.netns_lab import Lab, outage

SCENARIOS = ("steady", "node-death", "haproxy-death", "keepalived-stop", "failback",
             "cluster-down", "all-clusters-down", "split-brain")


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


def _finish(lab: Lab, name: str, probe, t_fault: float, before: dict, post: float, notes: dict | None = None,
            ok=None, t_end: float | None = None) -> Result:
    time.sleep(post)
    res = probe.stop()
    o = outage(res, t_fault, t_end, ok)
    is_ok = ok or (lambda r: bool(r[3]))
    failed = [r for r in res if r[1] >= t_fault and not is_ok(r)]
    notes = dict(notes or {})
    if failed:
        by: dict = {}
        for r in failed:
            by[r[2]] = by.get(r[2], 0) + 1
        notes["failed_by_target"] = dict(sorted(by.items()))
        notes["failures_ms_after_fault"] = [round((failed[0][0] - t_fault) * 1000), round((failed[-1][0] - t_fault) * 1000)]
    return Result(name, o["outage_ms"], o["failed_requests"], o["requests"], o["recovered"], before,
                  lab.vip_holders(), notes, res)


def prepare(lab: Lab) -> dict:
    """Every VIP on its master, adverts flowing: the state every scenario starts from."""
    lab.wait_vips(lab.masters(), timeout=20)
    time.sleep(_timing(lab)["settle"])
    return lab.vip_holders()


def run(lab: Lab, scenario: str, *, timeout: float = 0.3, post: float = 1.0, preempt_expected: bool | None = None) -> Result:
    """Run one scenario on a fresh lab; returns its Result."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    t = _timing(lab)
    before = prepare(lab)
    vip, master, backup = _victim(lab)

    if scenario == "failback":
        # The master dies first (not measured), the backup takes over; then the master returns (measured).
        lab.kill_node(master)
        lab.wait_vips({vip: backup}, timeout=t["master_down"] + 10)
        time.sleep(t["settle"] + 0.5)
        before = lab.vip_holders()

    targets = lab.targets((80,)) if scenario == "all-clusters-down" else lab.targets()
    probe = lab.probe(targets, timeout=timeout)
    time.sleep(0.5)  # ARP warm, a baseline of successes
    t_fault = time.monotonic()
    notes: dict = {}

    if scenario == "steady":
        time.sleep(2.0)
        res = _finish(lab, scenario, probe, t_fault, before, 0)
        per_vip: dict = {}
        for r in res.results:
            if r[3]:
                per_vip.setdefault(r[2], set()).add(r[5])
        res.notes["clusters_per_target"] = {k: sorted(v) for k, v in sorted(per_vip.items())}
        return res

    if scenario == "node-death":
        lab.kill_node(master)
        moved = _until(lambda: lab.vip_holders()[vip] == [backup], t["master_down"] + 5)
        return _finish(lab, scenario, probe, t_fault, before, post, {"victim": master, "moved": moved})

    if scenario == "haproxy-death":
        # The check script runs every check_interval from keepalived's start: a fault at a
        # fixed delay after start would always hit the same phase. Spread it over one interval.
        time.sleep(random.uniform(0, lab.site.vrrp.check_interval))
        t_fault = time.monotonic()
        pids = lab.haproxy_pids(master)
        lab.kill_daemon(master, "haproxy", signal.SIGKILL)
        lab.reap(master, "haproxy")  # as systemd would at once: a zombie still has /proc/<pid>/comm
        moved = _until(lambda: lab.vip_holders()[vip] == [backup], t["check"] + t["master_down"] + 5)
        return _finish(lab, scenario, probe, t_fault, before, post, {"victim": master, "moved": moved, "killed_pids": pids})

    if scenario == "keepalived-stop":
        lab.kill_daemon(master, "keepalived", signal.SIGTERM)
        moved = _until(lambda: lab.vip_holders()[vip] == [backup], t["master_down"] + 5)
        lab.reap(master, "keepalived")
        return _finish(lab, scenario, probe, t_fault, before, post, {"victim": master, "moved": moved})

    if scenario == "failback":
        lab.revive_node(master)
        if lab.site.vrrp.preempt:
            back = _until(lambda: lab.vip_holders()[vip] == [master], t["master_down"] + 5)
            notes = {"returned": master, "vip_moved_back": back}
            time.sleep(0.5)
        else:
            # nopreempt: the VIP must stay where it is; give it several master-down intervals to misbehave.
            time.sleep(max(2.0, 2 * t["master_down"]))
            notes = {"returned": master, "vip_moved_back": lab.vip_holders()[vip] == [master]}
        return _finish(lab, scenario, probe, t_fault, before, post, notes)

    if scenario == "cluster-down":
        down = lab.site.clusters[0].name
        other = lab.site.clusters[1].name
        lab.stop_cluster(down)
        # Until haproxy's checks mark it DOWN (inter * fall), then only `other` must answer.
        time.sleep(t["health"])
        t_mark = time.monotonic()
        time.sleep(1.0)
        res = _finish(lab, scenario, probe, t_fault, before, 0, {"down": down, "other": other})
        tail = [r for r in res.results if r[0] >= t_mark]
        res.notes["tail_clusters"] = sorted({r[5] for r in tail if r[3]})
        res.notes["tail_failed"] = sum(1 for r in tail if not r[3])
        return res

    if scenario == "all-clusters-down":
        for cl in lab.site.clusters:
            lab.stop_cluster(cl.name)
        time.sleep(t["health"])
        t_mark = time.monotonic()
        time.sleep(1.0)
        # The clear answer is a prompt 503: "success" here is any HTTP answer within the timeout.
        res = _finish(lab, scenario, probe, t_fault, before, 0, ok=lambda r: r[4] == 503)
        tail = [r for r in res.results if r[0] >= t_mark]
        res.notes["tail_statuses"] = sorted({r[4] for r in tail})
        res.notes["tail_max_ms"] = round(max((r[1] - r[0]) for r in tail) * 1000, 1) if tail else None
        return res

    if scenario == "split-brain":
        lab.split_vrrp(True)
        dup = _until(lambda: all(len(h) == len(lab.site.nodes) for h in lab.vip_holders().values()), t["master_down"] + 5)
        notes["during_split"] = lab.vip_holders()
        notes["duplicate_vips"] = dup
        time.sleep(3.0)
        t_heal = time.monotonic()
        lab.split_vrrp(False)
        healed = _until(lambda: all(len(h) == 1 for h in lab.vip_holders().values()), t["master_down"] + 5)
        notes["healed"] = healed
        notes["heal_ms"] = round((time.monotonic() - t_heal) * 1000, 1)
        return _finish(lab, scenario, probe, t_fault, before, max(post, 2.0), notes)

    raise AssertionError(scenario)
