"""BGP-mode scenarios measured by the client probe loop, and `invoke bench --bgp`.

The client sits behind the lab's FRR router (bgp_lab.py) and probes the anycast VIP the way the VRRP
scenarios probe theirs (netns_lab.start_probe: a new connection every 20 ms, 0.3 s timeout); every
request has a new source port, so the router's 5-tuple hash spreads them over every announcing node,
and each answer names the node that served it. Scenarios (registered with failover_scenarios.scenario
in this module's REGISTRY; each returns a failover_scenarios.Result):

    haproxy-death  haproxy killed on n1 of 2: the bgp-gate withdraws (issue 15's target: <= 1.5 s)
    node-death     n3 of 3 goes silent (no FIN, no withdraw): BFD 300 ms x 3 (target: <= 1 s)
    node-join      n3 starts beside n1, n2 and announces (target: 0 failed new requests)
    drain          `ha-ingress-proxy drain --wait 2` on n1 of 3 (drain_bgp): a graceful withdraw (target: 0)

node-death, node-join and drain also hold long-lived keep-alive connections (HOLDER, pinged every second)
through the change of the ECMP set: broken_established is the share that broke (leave, join), with the
leaving node's own connections counted apart (they break whatever the router does).

bgp_bench runs them `runs` times each on fresh labs and aggregates them in the design notes' record shape
(mode bgp, settings ours; node-death, node-join and drain also under ours+resilient-router, the router
forwarding by a resilient next-hop group, BgpLab(resilient=True)); bgp_spread measures how wrk's connections and requests spread over 1, 2, 3
nodes. Nothing here is asserted: tests/lab/test_bgp_lab.py asserts behaviour.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE
from typing import Any

from ha_ingress_lab import failover_scenarios
from ha_ingress_lab.bgp_lab import BgpLab, bgp_site
from ha_ingress_lab.failover_scenarios import Result, summarise
from ha_ingress_lab.netns_lab import stop_proc, summary
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.subproc import require_tool, start

REGISTRY: dict = {}
NODES = {"haproxy-death": 2, "node-death": 3, "node-join": 3, "drain": 3}  # nodes in the site
STARTED = {"node-join": 2}  # nodes announcing before the fault (default: all)
HELD = 60  # long-lived connections held through node-death, node-join and drain
BASELINE = 10  # probe requests answered before the fault is injected


def scenario(name: str):
    return failover_scenarios.scenario(name, REGISTRY)


# --------------------------------------------------------------------------- held connections

HOLDER = r"""
import json, socket, sys, threading, time
vip, n, every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

def ask(s):
    s.sendall(req)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("EOF")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(l.split(b":", 1)[1]) for l in head.lower().split(b"\r\n") if l.startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("EOF")
        body += chunk
    return body.decode(errors="replace").strip(), b"\r\nconnection: close" in head.lower()

conns, first = [], []
for i in range(n):
    s = socket.create_connection((vip, 80), timeout=2)
    first.append(ask(s)[0])
    conns.append(s)
broken, closed, moved = {}, {}, []
stop = threading.Event()

def keep(i, s):
    # one thread per connection: a connection that hangs (its node went silent) delays no other one
    last = False
    while not last:
        last = stop.wait(every)
        try:
            name, closing = ask(s)
            if name != first[i]:
                moved.append(i)
            if closing:  # the server asked us to leave (drain's keep-alive flag): a clean close, not a break
                closed[i] = time.monotonic()
                break
        except (OSError, ConnectionError, ValueError) as exc:
            broken[i] = [time.monotonic(), type(exc).__name__]
            break
    s.close()

threads = [threading.Thread(target=keep, args=(i, s), daemon=True) for i, s in enumerate(conns)]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.readline()
stop.set()  # every connection still open is asked once more
for t in threads:
    t.join(5)
print(json.dumps({"first": first, "broken": {str(k): v for k, v in broken.items()}, "clean_closes": len(closed),
                  "answered_by_another": len(moved)}), flush=True)
"""


class Holder:
    """n keep-alive connections from the client to the VIP, each asked again every `every` s (haproxy's
    client timeout is 10 s: an idle one would be closed cleanly and counted broken) and once more at
    stop(). A connection that fails once (reset, EOF, 2 s without an answer) is broken and not reopened;
    one whose answer says `Connection: close` (drain's keep-alive flag) is a clean close, not a break."""

    def __init__(self, lab: BgpLab, vip: str, n: int = HELD, every: float = 1.0) -> None:
        script = lab.tmp / "holder.py"
        script.write_text(HOLDER)
        self.n = n
        self.proc = start(["ip", "netns", "exec", lab.ns("c"), "python3", str(script), vip, str(n), str(every)],
                          stdin=PIPE, stdout=PIPE, text=True)
        lab.extra.append(self.proc)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            stop_proc(self.proc)
            raise RuntimeError(f"holder: could not open {n} connections to {vip} (said {line!r})")

    def stop(self, leaving: str | None = None) -> dict:
        """broken_established: the share of the held connections that broke; with `leaving` (the node that
        left), broken_on_surviving_nodes: the share of those on the other nodes (ECMP's rehash)."""
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        result = json.loads(self.proc.stdout.readline())
        stop_proc(self.proc)
        per_node: dict[str, int] = {}
        broken_per_node: dict[str, int] = {}
        for i, name in enumerate(result["first"]):
            per_node[name] = per_node.get(name, 0) + 1
            if str(i) in result["broken"]:
                broken_per_node[name] = broken_per_node.get(name, 0) + 1
        out = {"connections": self.n, "broken": len(result["broken"]),
               "broken_established": round(len(result["broken"]) / self.n, 3),
               "per_node_before": dict(sorted(per_node.items())), "broken_per_node": dict(sorted(broken_per_node.items())),
               "clean_closes": result["clean_closes"], "answered_by_another": result["answered_by_another"]}
        if leaving is not None:
            survivors = self.n - per_node.get(leaving, 0)
            broken = out["broken"] - broken_per_node.get(leaving, 0)
            out["broken_on_surviving_nodes"] = round(broken / survivors, 3) if survivors else 0.0
        return out


# --------------------------------------------------------------------------- one run


@dataclass
class BgpRun:
    """One scenario run on a BgpLab whose started nodes announce the VIP, with BFD up to each of them."""

    lab: BgpLab
    name: str
    timeout: float
    post: float
    vip: str
    before: dict  # VIP -> the router's next hops when the measured part starts
    probe: Any = None
    t_fault: float = 0.0
    log_mark: int = 0
    notes: dict = field(default_factory=dict)

    @classmethod
    def begin(cls, lab: BgpLab, name: str, timeout: float, post: float) -> BgpRun:
        vip = lab.site.vips[0].address
        n = len(lab.started)
        hops = lab.wait_paths(vip, n, 60)
        bfd = lab.wait_bfd(n, 60)
        if len(hops) != n or len(bfd) < n:
            raise RuntimeError(f"bgp lab not ready: {len(hops)} of {n} paths, BFD up to {bfd}")
        return cls(lab, name, timeout, post, vip, {vip: hops}, notes={"bfd_up_at_start": bfd})

    def served(self) -> int:
        """Connections the announcing nodes' haproxy frontends have accepted so far (the probe opens one per
        request; the held connections stay open, so they do not count here)."""
        return sum(self.lab.frontend_counts(n)["connections"] for n in self.lab.gates)

    def start(self) -> None:
        """Start the probe; wait until the nodes have accepted BASELINE of its connections (a python process
        takes a while to start on a loaded machine); then mark the fault time."""
        base = self.served()
        self.probe = self.lab.probe([f"{self.vip}:80:http"], timeout=self.timeout)
        deadline = time.monotonic() + 20
        while self.served() < base + BASELINE and time.monotonic() < deadline:
            time.sleep(0.05)
        self.t_fault = time.monotonic()
        self.log_mark = len(self.lab.log)

    def paths_after(self, want: int, limit: float) -> float | None:
        """ms from the fault until the router's route has `want` next hops (None: not within limit)."""
        if len(self.lab.wait_paths(self.vip, want, limit, step=0.02)) == want:
            return round((time.monotonic() - self.t_fault) * 1000)
        return None

    def finish(self, notes: dict | None = None, post: float | None = None) -> Result:
        time.sleep(self.post if post is None else post)
        records = self.probe.stop()
        res = summarise(self.name, records, self.t_fault, self.before, {self.vip: self.lab.paths(self.vip)},
                        {**self.notes, **(notes or {})})
        served = lambda recs: dict(sorted({n: sum(1 for r in recs if r[3] and r[5] == n)  # noqa: E731
                                           for n in {r[5] for r in recs if r[3]}}.items()))
        res.notes["served_before"] = served([r for r in records if r[1] < self.t_fault])
        tail = time.monotonic() - (self.post if post is None else post)
        res.notes["served_last_second"] = served([r for r in records if r[0] >= tail])
        # each failure: [ms after the fault it started, ms it took] (a reset is quick; a timeout takes `timeout`)
        res.notes["failures"] = [[round((r[0] - self.t_fault) * 1000), round((r[1] - r[0]) * 1000)]
                                 for r in records if r[1] >= self.t_fault and not r[3]]
        res.notes["bfd_up_at_end"] = self.lab.bfd_up()
        # what the gates did meanwhile, ms after the fault (a withdraw nobody asked for is a false one)
        res.notes["gate_log"] = [f"+{(float(t) - self.t_fault) * 1000:.0f} ms {rest}"
                                 for t, rest in (line.split(" ", 1) for line in self.lab.log[self.log_mark:])]
        return res


@scenario("haproxy-death")
def _haproxy_death(r: BgpRun) -> Result:
    """haproxy is killed on n1: its gate misses `gate_fall` checks and withdraws; n2 serves alone."""
    r.start()
    time.sleep(random.uniform(0, r.lab.site.bgp.gate_interval_ms / 1000))  # any phase of the gate's tick
    r.t_fault = time.monotonic()
    r.lab.kill_haproxy("n1")
    withdraw = r.paths_after(1, 10)
    return r.finish({"victim": "n1", "withdraw_ms": withdraw})


@scenario("node-death")
def _node_death(r: BgpRun) -> Result:
    """n3 of 3 goes silent (every packet dropped, no withdraw): BFD takes its path out; HELD connections
    held through it say what the leave broke (n3's own, and the survivors' rehashed by ECMP)."""
    held = Holder(r.lab, r.vip)
    r.start()
    r.lab.kill_node("n3")
    withdraw = r.paths_after(2, 15)
    res = r.finish({"victim": "n3", "withdraw_ms": withdraw})
    res.notes["held"] = held.stop(leaving="n3")
    return res


@scenario("node-join")
def _node_join(r: BgpRun) -> Result:
    """n3 starts (FRR, haproxy, gate) beside n1, n2 and announces once haproxy answers: new requests must
    not fail; HELD connections held through the join say how many the rehash broke."""
    held = Holder(r.lab, r.vip)
    r.start()
    r.lab.start_node("n3")
    announced = r.paths_after(3, 60)
    res = r.finish({"joined": "n3", "announce_ms": announced})
    res.notes["held"] = held.stop()
    return res


@scenario("drain")
def _drain(r: BgpRun) -> Result:
    """`ha-ingress-proxy drain --wait 2` on n1 of 3 (drain_bgp as the CLI runs it, with the lab node's root,
    vtysh and peer check): keep-alive flag, wait for streams, then the drain file makes the gate withdraw.
    New requests must not fail (target 0); HELD keep-alive connections are asked every second, so n1's get
    `Connection: close` answers during the wait and leave cleanly; the survivors' are rehashed by plain ECMP."""
    held = Holder(r.lab, r.vip)
    r.start()
    out = r.lab.drain("n1", wait=failover_scenarios.DRAIN_WAIT)
    withdraw = r.paths_after(2, 10)
    info = out.info
    notes = {"victim": "n1", "withdraw_ms": withdraw, "drain_lines": out.lines,
             **{k: info.get(k) for k in ("waited_s", "streams_left_at_move", "idle_http_at_move", "withdrawn_ms",
                                         "haproxy_flag", "peers_haproxy")}}
    if info.get("moved_monotonic"):
        notes["move_ms_after_fault"] = round((info["moved_monotonic"] - r.t_fault) * 1000)
    res = r.finish(notes)
    res.notes["held"] = held.stop(leaving="n1")
    return res


SCENARIOS = tuple(REGISTRY)


def run(lab: BgpLab, name: str, *, timeout: float = 0.3, post: float = 1.0) -> Result:
    """Run one scenario on a fresh BgpLab (lab_for(name) builds the right one)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown bgp scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return REGISTRY[name](BgpRun.begin(lab, name, timeout, post))


def lab_for(name: str, settings: str = "ours") -> BgpLab:
    """The lab a scenario runs on; settings RESILIENT: the router hashes with a resilient next-hop group."""
    site = bgp_site(NODES[name])
    started = STARTED.get(name)
    return BgpLab(site, started=tuple(f"n{i}" for i in range(1, started + 1)) if started else None,
                  resilient=settings == RESILIENT)


# --------------------------------------------------------------------------- benchmarks

MEASURES = ("withdraw_ms", "announce_ms")
PROBE_TIMEOUT = 0.3  # s, as the VRRP scenarios' probe
RESILIENT = "ours+resilient-router"  # the same node side; the router hashes resiliently (BgpLab resilient)
RESILIENT_SCENARIOS = ("node-death", "node-join", "drain")  # where held connections see an ECMP set change


def bgp_bench(runs: int = 5, scenarios: tuple[str, ...] = (), log=print) -> tuple[list[dict], list[dict]]:
    """Every scenario `runs` times, each on a fresh lab, alternating scenarios so machine noise is shared.
    Returns (records, raw per-run records)."""
    names = scenarios or SCENARIOS
    cases = [(n, st) for n in names for st in ("ours", RESILIENT) if st == "ours" or n in RESILIENT_SCENARIOS]
    samples: dict[tuple[str, str], list[dict]] = {c: [] for c in cases}
    errors: dict[tuple[str, str], int] = {}
    raw = []
    for i in range(runs):
        for name, settings in cases if i % 2 == 0 else reversed(cases):
            try:
                with lab_for(name, settings) as lab:
                    rec = run(lab, name, timeout=PROBE_TIMEOUT).record()
            except (RuntimeError, UserError) as exc:  # the lab could not get ready (no route, no BFD): say so, go on
                errors[(name, settings)] = errors.get((name, settings), 0) + 1
                raw.append({"mode": "bgp", "scenario": name, "settings": settings, "run": i, "error": str(exc)})
                log(f"bgp {name} {settings} #{i}: not measured: {exc}", flush=True)
                continue
            samples[(name, settings)].append(rec)
            raw.append({"mode": "bgp", "settings": settings, "run": i, **rec})
            held = rec.get("held", {})
            log(f"bgp {name} {settings} #{i}: outage {rec['outage_ms']} ms, failed {rec['failed_requests']}/{rec['requests']}, "
                + ", ".join(f"{k} {rec[k]}" for k in MEASURES if k in rec)
                + (f", broken_established {held['broken_established']}" if held else ""), flush=True)
    records = []
    for (name, settings) in cases:
        s = samples[(name, settings)]
        if not s:
            records.append({"mode": "bgp", "scenario": name, "settings": settings, "runs": 0,
                            "not_measured": errors.get((name, settings), 0)})
            continue
        rec = {"mode": "bgp", "scenario": name, "settings": settings, "runs": len(s),
               "not_measured": errors.get((name, settings), 0),
               "outage_ms": summary([r["outage_ms"] for r in s]),
               "failed_requests": summary([r["failed_requests"] for r in s]),
               "requests": summary([r["requests"] for r in s]),
               "recovered": sum(1 for r in s if r["recovered"]),
               "nodes": NODES[name], "probe": "a new connection every 20 ms, 0.3 s timeout, from behind the router"}
        # a failure that took (nearly) the probe's timeout timed out (a silent node, or a starved machine); a
        # quicker one was refused or reset (a dead haproxy's port, or a flow rehashed to another node mid-way)
        timed_out = lambda r: sum(1 for _, took in r["failures"] if took >= 0.9 * PROBE_TIMEOUT * 1000)  # noqa: E731
        rec["failed_timeouts"] = summary([timed_out(r) for r in s])
        rec["failed_resets"] = summary([r["failed_requests"] - timed_out(r) for r in s])
        for k in MEASURES:  # router-side: ms from the fault until the router's kernel route changed
            values = [r[k] for r in s if isinstance(r.get(k), (int, float))]
            if values:
                rec[k] = summary(values)
                rec[f"{k}_missing"] = len(s) - len(values)
        held = [r["held"] for r in s if "held" in r]
        if held:
            rec["broken_established"] = summary([h["broken_established"] for h in held])
            rec["held_connections"] = HELD
            if all("broken_on_surviving_nodes" in h for h in held):
                rec["broken_on_surviving_nodes"] = summary([h["broken_on_surviving_nodes"] for h in held])
        records.append(rec)
    return records, raw


def bgp_spread(runs: int = 3, duration: int = 5, connections: int = 64, log=print) -> list[dict]:
    """wrk through the router to the VIP with N = 1, 2, 3 nodes announcing (nodes join one by one in one lab
    per run): per-node requests and connections from each haproxy's frontend counters, and how even they are
    (min_max_share: the smallest node's share over the largest's, 1.0 = even; cv: stdev / mean)."""
    from ha_ingress_lab.bench import wrk

    require_tool("wrk", "wrk")
    per_n: dict[int, list[dict]] = {1: [], 2: [], 3: []}
    for i in range(runs):
        site = bgp_site(3)
        vip = site.vips[0].address
        with BgpLab(site, started=("n1",)) as lab:
            for n in (1, 2, 3):
                if n > 1:
                    lab.start_node(f"n{n}")
                names = [f"n{k}" for k in range(1, n + 1)]
                if len(lab.wait_paths(vip, n, 60)) != n:
                    raise RuntimeError(f"spread: the router has not {n} paths to {vip}")
                before = {m: lab.frontend_counts(m) for m in names}
                res = wrk(lab.ns("c"), f"http://{vip}/", duration, connections)
                after = {m: lab.frontend_counts(m) for m in names}
                reqs = {m: after[m]["requests"] - before[m]["requests"] for m in names}
                conns = {m: after[m]["connections"] - before[m]["connections"] for m in names}
                sample = {"rps": res["rps"], "requests_per_node": reqs, "connections_per_node": conns,
                          **_evenness(reqs), **{f"connections_{k}": v for k, v in _evenness(conns).items()},
                          "non_2xx": res["non_2xx"], "socket_errors": res["socket_errors"]}
                per_n[n].append(sample)
                log(f"bgp spread #{i} N={n}: {res['rps']:.0f} req/s, requests {reqs}, connections {conns}, "
                    f"min/max share {sample['min_max_share']} (connections {sample['connections_min_max_share']}), "
                    f"cv {sample['cv']}", flush=True)
    return [{"mode": "bgp", "scenario": "throughput-spread", "settings": "ours", "nodes": n, "runs": len(s),
             "wrk": f"-t1 -c{connections} -d{duration}s, taskset -c 0, from the client behind the router",
             "rps": summary([x["rps"] for x in s]),
             "min_max_share": summary([x["min_max_share"] for x in s]),
             "cv": summary([x["cv"] for x in s]),
             "connections_min_max_share": summary([x["connections_min_max_share"] for x in s]),
             "samples": s} for n, s in per_n.items()]


def _evenness(counts: dict[str, int]) -> dict:
    """shares of the total; min_max_share: smallest over largest (1.0 = even); cv: stdev / mean of the counts."""
    values = list(counts.values())
    total = sum(values) or 1
    shares = [v / total for v in values]
    return {"shares": [round(x, 3) for x in shares],
            "min_max_share": round(min(shares) / max(shares), 3) if max(shares) else 0.0,
            "cv": round(statistics.pstdev(shares) / statistics.mean(shares), 3)}


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def table(records: list[dict]) -> str:
    fmt = lambda d: f"{d['min']:g} / {d['median']:g} / {d['max']:g}" if d else "-"  # noqa: E731
    lines = ["| scenario | settings | nodes | runs | outage ms min/med/max | failed requests min/med/max "
             "| of which timeouts (max) | router-side ms min/med/max | broken_established min/med/max "
             "| on surviving nodes min/med/max |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if not r["runs"]:
            lines.append(f"| {r['scenario']} | {r['settings']} | - | 0 | not measured ({r['not_measured']} failed to start) |")
            continue
        router = r.get("withdraw_ms") or r.get("announce_ms")
        lines.append(f"| {r['scenario']} | {r['settings']} | {r['nodes']} | {r['runs']} | {fmt(r['outage_ms'])} | {fmt(r['failed_requests'])} "
                     f"| {r['failed_timeouts']['max'] if 'failed_timeouts' in r else '-'} "
                     f"| {fmt(router)} | {fmt(r.get('broken_established'))} | {fmt(r.get('broken_on_surviving_nodes'))} |")
    return "\n".join(lines)


def spread_table(records: list[dict]) -> str:
    fmt = lambda d: f"{d['min']:g} / {d['median']:g} / {d['max']:g}"  # noqa: E731
    lines = ["| nodes | runs | req/s min/med/max | requests: min/max share min/med/max | requests: cv min/med/max "
             "| connections: min/max share min/med/max | connections per node (each run) |", "|---|---|---|---|---|---|---|"]
    for r in records:
        per = "; ".join(" ".join(str(v) for v in x["connections_per_node"].values()) for x in r["samples"])
        lines.append(f"| {r['nodes']} | {r['runs']} | {fmt(r['rps'])} | {fmt(r['min_max_share'])} | {fmt(r['cv'])} "
                     f"| {fmt(r['connections_min_max_share'])} | {per} |")
    return "\n".join(lines)


def bgp_report(out: Path, runs: int = 5, scenarios: tuple[str, ...] = ()) -> list[dict]:
    """`invoke bench --bgp`: the scenarios -> <out>/bench/bgp.json (+ bgp-runs.json), the throughput spread
    -> <out>/bench/bgp-spread.json; prints both tables with the machine's load. scenarios: only these
    (`throughput-spread` names the spread); default: all."""
    unknown = set(scenarios) - set(SCENARIOS) - {"throughput-spread"}
    if unknown:
        raise UserError(f"bench --bgp: --scenario {', '.join(sorted(unknown))}: unknown; known: {', '.join(SCENARIOS)}, throughput-spread")
    spread = not scenarios or "throughput-spread" in scenarios
    names = tuple(s for s in scenarios if s in REGISTRY) if scenarios else SCENARIOS
    records, raw = bgp_bench(runs, names) if names else ([], [])
    load = {"cpus_on_machine": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    for r in records:
        r["load"] = load
    if records:
        _write(out / "bench" / "bgp.json", records)
        _write(out / "bench" / "bgp-runs.json", raw)
        print(table(records))
        print(f"wrote {out / 'bench' / 'bgp.json'} ({load})")
    if spread:
        rows = bgp_spread(runs)
        for r in rows:
            r["load"] = {"cpus_on_machine": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
        _write(out / "bench" / "bgp-spread.json", rows)
        print(spread_table(rows))
        print(f"wrote {out / 'bench' / 'bgp-spread.json'}")
    return records
