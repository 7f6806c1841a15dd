"""The shipped alert rules against the failure scenarios, on a running lab watched by a real Prometheus.

Each scenario starts from quiet (no alert pending or firing), injects the same
fault as the failover scenario of that name (the lab's own primitives: a
node's link down and its daemons SIGKILLed, haproxy SIGKILLed, VRRP filtered,
cluster servers stopped), holds it until the alerts it must raise fire (or a
deadline passes), heals it, and waits until every alert has cleared. Meanwhile
it polls Prometheus' /api/v1/alerts every `poll` seconds and records, per
alert (name and labels), when it was first seen pending and firing after the
fault, and when it disappeared after the heal.

Unlike the failover scenarios no probe runs: the alerts are about the tier's
state, and probe traffic would only add HighErrorRate noise.

`invoke bench --alerts` writes these timings to build/bench/alerts.json with
the shipped `for` durations; tests/lab/test_alerts.py asserts the behaviour
with every `for` shortened (prometheus_lab.rules_text).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

from ha_ingress_lab.netns_lab import Lab
from ha_ingress_lab.prometheus_lab import Prometheus

SCENARIOS = ("steady", "node-death", "haproxy-death", "split-brain", "cluster-down", "all-clusters-down")
# What each scenario must fire; anything else firing is a false alert.
EXPECTED: dict[str, frozenset[str]] = {
    "steady": frozenset(),
    "node-death": frozenset({"ProxyNodeDown"}),
    "haproxy-death": frozenset({"HaproxyDown"}),
    "split-brain": frozenset({"VipDualMaster"}),
    "cluster-down": frozenset({"ClusterDown"}),
    "all-clusters-down": frozenset({"AllClustersDown", "ClusterDown"}),
}


@dataclass
class Seen:
    name: str
    labels: dict
    pending_s: float | None = None  # after the fault
    fire_s: float | None = None
    clear_s: float | None = None  # after the heal
    pending_max_s: float = 0.0  # longest stretch pending without firing


@dataclass
class AlertRun:
    scenario: str
    mode: str
    fors: dict[str, float]
    seen: dict[tuple, Seen] = field(default_factory=dict)
    quiet_before: bool = True
    healed_s: float | None = None  # heal -> no alert pending or firing
    notes: dict = field(default_factory=dict)

    def fired(self) -> set[str]:
        return {s.name for s in self.seen.values() if s.fire_s is not None}

    def unexpected(self) -> set[str]:
        return self.fired() - EXPECTED[self.scenario]

    def missing(self) -> set[str]:
        return set(EXPECTED[self.scenario]) - self.fired()

    def pending_only(self) -> list[dict]:
        """Alerts that went pending but never fired (a transient shorter than their `for`), longest stretch first."""
        rows = [{"alert": s.name, "labels": _labels(s.labels), "pending_max_s": _r(s.pending_max_s)}
                for s in self.seen.values() if s.fire_s is None]
        return sorted(rows, key=lambda r: -r["pending_max_s"])

    def records(self) -> list[dict]:
        """One record per alert that fired: its `for`, time to fire (from the fault) and to clear (from the heal)."""
        out = []
        for s in sorted(self.seen.values(), key=lambda s: (s.name, sorted(s.labels.items()))):
            if s.fire_s is None:
                continue
            labels = _labels(s.labels)
            out.append({"scenario": self.scenario, "mode": self.mode, "alert": s.name, "labels": labels,
                        "expected": s.name in EXPECTED[self.scenario], "for_s": self.fors.get(s.name),
                        "time_to_fire_s": _r(s.fire_s), "time_to_clear_s": _r(s.clear_s),
                        "first_pending_s": _r(s.pending_s)})
        return out


def _labels(labels: dict) -> dict:
    return {k: v for k, v in labels.items() if k not in ("alertname", "severity", "job")}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


class _Watch:
    def __init__(self, prom: Prometheus, run: AlertRun, poll: float) -> None:
        self.prom, self.run, self.poll = prom, run, poll
        self.pending_since: dict[tuple, float] = {}

    def sample(self, t0: float, phase: str) -> list:
        alerts = self.prom.alerts()
        now = time.monotonic()
        keys = set()
        for a in alerts:
            keys.add(a.key)
            s = self.run.seen.setdefault(a.key, Seen(a.name, a.labels))
            if phase == "fault":
                if s.pending_s is None:
                    s.pending_s = now - t0
                if a.state == "firing" and s.fire_s is None:
                    s.fire_s = now - t0
            if a.state == "pending":
                self.pending_since.setdefault(a.key, now)
                s.pending_max_s = max(s.pending_max_s, now - self.pending_since[a.key])
            else:
                self.pending_since.pop(a.key, None)
        for k in list(self.pending_since):
            if k not in keys:
                del self.pending_since[k]
        if phase == "heal":
            for k, s in self.run.seen.items():
                if k not in keys and s.clear_s is None:
                    s.clear_s = now - t0
        return alerts

    def until(self, cond, timeout: float, t0: float, phase: str) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            alerts = self.sample(t0, phase)
            if cond(alerts):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(self.poll)


def _health_s(lab: Lab) -> float:
    """How long haproxy's checks may take to mark a cluster DOWN (for deadlines only)."""
    h = lab.site.health
    inter = h.inter
    sec = float(inter[:-2]) / 1000 if inter.endswith("ms") else float(inter.rstrip("s"))
    return sec * (h.fall + 1) + 5.0


def _faults(lab: Lab, scenario: str):
    """(fault, heal) callables for a scenario, on the first VIP's current master."""
    vip = lab.site.vips[0].address
    master = lab.vip_holders()[vip][0]
    clusters = [c.name for c in lab.site.clusters]

    if scenario == "node-death":
        return (lambda: lab.kill_node(master)), (lambda: lab.revive_node(master)), {"victim": master}
    if scenario == "haproxy-death":
        def kill():
            lab.kill_daemon(master, "haproxy", signal.SIGKILL)
            lab.reap(master, "haproxy")

        def restart():
            lab.start_daemon(master, "haproxy")
            lab.wait_haproxy(master)
        return kill, restart, {"victim": master}
    if scenario == "split-brain":
        return (lambda: lab.split_vrrp(True)), (lambda: lab.split_vrrp(False)), {}
    if scenario == "cluster-down":
        return (lambda: lab.stop_cluster(clusters[0])), (lambda: lab.start_cluster(clusters[0])), {"down": clusters[0]}
    if scenario == "all-clusters-down":
        def stop_all():
            for c in clusters:
                lab.stop_cluster(c)

        def start_all():
            for c in clusters:
                lab.start_cluster(c)
        return stop_all, start_all, {"down": clusters}
    raise ValueError(scenario)


def prepare(lab: Lab) -> None:
    """Every node applied by the real agent, its exporter running (its unit's command line)."""
    for node in lab.site.nodes:
        lab.agent(node.name, "apply")
    for node in lab.site.nodes:
        lab.start_metrics(node.name)


def run(lab: Lab, prom: Prometheus, scenario: str, *, poll: float = 0.25, steady_s: float = 10.0,
        quiet_timeout: float = 120.0) -> AlertRun:
    """One scenario on a lab whose every VIP is on its master and Prometheus scrapes every target."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown alert scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    res = AlertRun(scenario, str(lab.site.mode), dict(prom.fors))
    watch = _Watch(prom, res, poll)
    lab.wait_vips(lab.masters(), timeout=30)
    res.quiet_before = watch.until(lambda alerts: not alerts, quiet_timeout, time.monotonic(), "before")
    res.seen.clear()
    t_fault = time.monotonic()
    if scenario == "steady":
        watch.until(lambda alerts: False, steady_s, t_fault, "fault")
        res.healed_s = 0.0
        return res
    fault, heal, notes = _faults(lab, scenario)
    res.notes.update(notes)
    expected = EXPECTED[scenario]
    deadline = max(res.fors.get(a, 0) for a in expected) + _health_s(lab) + 20
    fault()

    def all_fired(alerts) -> bool:
        firing = {a.name for a in alerts if a.state == "firing"}
        return expected <= firing

    res.notes["fired_in_time"] = watch.until(all_fired, deadline, t_fault, "fault")
    # hold a little longer than the detection: a false alert that needs its own `for` has time to show
    watch.until(lambda alerts: False, 2 * prom.evaluation, t_fault, "fault")
    t_heal = time.monotonic()
    heal()
    cleared = watch.until(lambda alerts: not alerts, quiet_timeout, t_heal, "heal")
    res.healed_s = round(time.monotonic() - t_heal, 2) if cleared else None
    return res


def table(records: list[dict]) -> str:
    lines = ["| mode | scenario | alert | labels | for s | time to fire s | time to clear s |", "|---|---|---|---|---|---|---|"]
    for r in records:
        labels = ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items()) if k not in ("site",))
        lines.append(f"| {r['mode']} | {r['scenario']} | {r['alert']}{'' if r['expected'] else ' (UNEXPECTED)'} | {labels} | "
                     f"{r['for_s']:g} | {r['time_to_fire_s']} | {r['time_to_clear_s']} |")
    return "\n".join(lines)
