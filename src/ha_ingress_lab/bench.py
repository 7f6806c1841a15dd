"""Benchmarks on the lab: failover (ours vs the seed's settings) and throughput (wrk).

Both write JSON under build/bench/ (the design notes' record format). Nothing
here is asserted; the numbers are for people. Ours and the seed's are measured
in the same run, alternating, so machine noise hits both alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path
from subprocess import DEVNULL

from ha_ingress_lab import failover_scenarios
from ha_ingress_lab.netns_lab import Lab, stop_proc, summary
from ha_ingress_proxy import inventory as inv
from ha_ingress_proxy import layout
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.subproc import require_tool, run, start

# The seed's settings, expressed as inventory keys (docs/lab.md): adverts every
# second (VRRPv2), the check script every 10 s (keepalived's default fall/rise
# of 1), preemption (its master takes the VIP back), no periodic gratuitous ARP (nor one at a split's heal),
# and haproxy's `option http-server-close`.
# VRRP by multicast, open to the whole segment (no packet filter), as the seed's.
SEED_VRRP = {"advert_int": 1, "version": 2, "check_interval": 10, "check_fall": 1, "check_rise": 1,
             "preempt": True, "garp_refresh": 0, "unicast": False, "filter": False, "heal_garp": False,
             "nice": 0, "haproxy_watch": False}
# Its `timeout connect 10s` too (ours defaults to 200ms: docs/clusters.md).
# No L7 retries either (haproxy's default: only failed connections are retried).
SEED_HAPROXY = {"http_server_close": True, "timeout_connect": "10s", "l7_retries": "off"}
# The seed's server checks: `check inter 2000 rise 2 fall 5`, no passive observation, no slow start.
SEED_HEALTH = {"type": "tcp", "port": None, "inter": "2s", "fastinter": "2s", "downinter": "2s", "rise": 2, "fall": 5, "observe": False, "slowstart": 0}


# The day-2 scenarios count resets of a held plain-TCP echo stream (lab_processes serve);
# every other scenario runs against the nginx clusters (lab_ingress.py).
SCENARIO_BACKEND = {"drain": "python", "reload": "python"}


# flapping-cluster: state_changes (haproxy's UP<->DOWN transitions of the flapping cluster, all nodes),
# other_cluster_downs, last_change_ms, in_rotation_share, traffic_share
EXTRA_MEASURES = ("recovery_after_heal_ms", "arp_flips", "false_failovers", "state_changes", "other_cluster_downs",
                  "last_change_ms", "in_rotation_share", "traffic_share", "watcher_ms", "failed_at_move")


def seed_site(path: Path) -> inv.Site:
    """The example inventory with the seed's vrrp/haproxy settings (through the loader's checks)."""
    data = inv.parse_yaml(Path(path).read_text(), str(path))
    data["vrrp"] = {**(data.get("vrrp") or {}), **SEED_VRRP}
    data["haproxy"] = {**(data.get("haproxy") or {}), **SEED_HAPROXY}
    data["health"] = {**(data.get("health") or {}), **SEED_HEALTH}
    for cl in data.get("clusters") or []:
        if isinstance(cl, dict):
            cl.pop("health", None)
    return inv.validate(data, f"{path} (seed settings)")


# The settings sites() makes, in the order reports list them.
SETTINGS = ("ours", "seed", "ours-garp1", "ours-rise5", "ours-connect5s", "ours-noretry")


def sites(path: Path) -> dict[str, inv.Site]:
    """One Site per name of SETTINGS."""
    ours = inv.load(path)
    return {"ours": ours, "seed": seed_site(path),
            # the split-brain mitigation measured on its own (docs/lab.md)
            "ours-garp1": replace(ours, vrrp=replace(ours.vrrp, garp_refresh=1)),
            # flapping-cluster: a longer way back in (rise 5 instead of 3), measured on its own
            "ours-rise5": _with_health(path, {"rise": 5}),
            # cluster-down: the connect timeout before 200ms (the 1 s turn-around; docs/clusters.md)
            "ours-connect5s": replace(ours, haproxy=replace(ours.haproxy, timeout_connect="5s")),
            # cluster-down: without L7 retries (a GET in flight when a cluster dies fails; docs/clusters.md)
            "ours-noretry": replace(ours, haproxy=replace(ours.haproxy, l7_retries="off"))}


def _with_health(path: Path, health: dict) -> inv.Site:
    """The inventory with these health keys changed (through the loader: clusters inherit them)."""
    data = inv.parse_yaml(Path(path).read_text(), str(path))
    data["health"] = {**(data.get("health") or {}), **health}
    return inv.validate(data, f"{path} (health {health})")


def failover_bench(inventories: list[Path], out: Path, work: Path, runs: int = 5,
                   scenarios: tuple[str, ...] = failover_scenarios.SCENARIOS, log=print,
                   settings_list: tuple[str, ...] = ("ours", "seed"), probe_timeout: float = 0.3) -> list[dict]:
    # Records of scenarios not run now are kept (so one scenario can be re-measured).
    key = lambda r: (r["mode"], r["scenario"], r["settings"])  # noqa: E731
    old = json.loads((out / "failover.json").read_text()) if (out / "failover.json").exists() else []
    old_raw = json.loads((out / "failover-runs.json").read_text()) if (out / "failover-runs.json").exists() else []
    records: list[dict] = []
    raw: list[dict] = []

    def merged(new: list[dict], previous: list[dict]) -> list[dict]:
        done = {key(r) for r in new}
        order = {(m, s, st): i for i, (m, s, st) in enumerate(
            (m, s, st) for m in inv.VRRP_MODES for s in failover_scenarios.SCENARIOS for st in SETTINGS)}
        rows = [r for r in previous if key(r) not in done] + new
        return sorted(rows, key=lambda r: (order.get(key(r), 999), r.get("run", 0)))
    for path in inventories:
        both = sites(path)
        mode = both["ours"].mode
        for scenario in scenarios:
            samples: dict[str, list[dict]] = {k: [] for k in settings_list}
            for i in range(runs):
                for settings in settings_list if i % 2 == 0 else tuple(reversed(settings_list)):
                    with Lab(both[settings], work / f"{mode}-{scenario}-{settings}",
                             backend=SCENARIO_BACKEND.get(scenario, "nginx")) as lab:
                        res = failover_scenarios.run(lab, scenario, settings=settings, timeout=probe_timeout)
                    rec = res.record()
                    samples[settings].append(rec)
                    raw.append({"mode": mode, "settings": settings, "run": i, **rec})
                    log(f"{mode} {scenario} {settings} #{i}: outage {rec['outage_ms']} ms, "
                        f"failed {rec['failed_requests']}/{rec['requests']}"
                        + (f", long-lived resets {rec['long_lived_resets']}" if "long_lived_resets" in rec else ""))
            for settings in settings_list:
                s = samples[settings]
                records.append({
                    "mode": mode, "scenario": scenario, "settings": settings, "runs": len(s), "probe_timeout_s": probe_timeout,
                    "outage_ms": summary([r["outage_ms"] for r in s]),
                    "failed_requests": summary([r["failed_requests"] for r in s]),
                    "requests": summary([r["requests"] for r in s]),
                    # optional DESIGN fields, when every run measured them
                    **{f: summary([r[f] for r in s]) for f in ("cluster_out_ms",)
                       if s and all(isinstance(r.get(f), (int, float)) for r in s)},
                    "recovered": sum(1 for r in s if r["recovered"]),
                    # failed requests of all runs by kind (timeout / status N / error: failover_scenarios._Run.finish)
                    "failed_kinds": {k: sum(r.get("failed_kinds", {}).get(k, 0) for r in s)
                                     for k in sorted({k for r in s for k in r.get("failed_kinds", {})})},
                    **({"long_lived_resets": summary([r["long_lived_resets"] for r in s])}
                       if all("long_lived_resets" in r for r in s) else {}),
                    # scenario-specific measures (split-brain: recovery_after_heal_ms, arp_flips;
                    # steady: false_failovers), summarised when every run has them
                    **{k: summary([r[k] for r in s]) for k in EXTRA_MEASURES
                       if s and all(isinstance(r.get(k), (int, float)) for r in s)},
                })
            _write(out / "failover.json", merged(records, old))
            _write(out / "failover-runs.json", merged(raw, old_raw))
    return merged(records, old)


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- throughput

WRK_CPU = "0"
SCRAPES = 100  # back-to-back /metrics scrapes whose haproxy CPU gives the cost of one
SERVER_CPU = "1"


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
    return total


def wrk(ns: str, url: str, duration: int, connections: int) -> dict:
    """wrk (1 thread, pinned to WRK_CPU) from namespace ns: req/s, requests, non-2xx, socket errors."""
    argv = ["ip", "netns", "exec", ns, "taskset", "-c", WRK_CPU,
            "wrk", "-t1", f"-c{connections}", f"-d{duration}s", url]
    text = run(argv, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    sock = re.search(r"Socket errors:.*", text)
    return {"rps": rps, "requests": total, "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock.group(0) if sock else ""}


def log_variant(site: inv.Site, transport: str) -> inv.Site:
    """ours with another haproxy.log_transport."""
    if transport == "ring" and site.target == "el8":
        raise ValueError("--log-transport ring: target el8's haproxy 1.8 has no ring buffers")
    return replace(site, haproxy=replace(site.haproxy, log_transport=transport))


def throughput_bench(path: Path, out: Path, work: Path, rounds: int = 3, duration: int = 5,
                     connections: int = 50, log=print, log_transports: tuple[str, ...] = (),
                     profile: bool = False) -> dict:
    """direct / seed (http-server-close) / ours, alternating, wrk pinned to CPU 0, servers to CPU 1.

    log_transports: also ours with each of these haproxy.log_transport values (variants
    `ours+log-<transport>`; ours itself has the inventory's).
    profile: in the last round, `perf record` on the tier's haproxy during a second wrk run of each
    variant (not the measured one); reports under <out>/profile/ (linux-perf, optional)."""
    if profile and not shutil.which("perf"):
        raise UserError("bench --profile needs perf: apt-get install linux-perf (a bench-only tool, not in invokew)")
    require_tool("wrk", "wrk")
    require_tool("taskset", "util-linux")
    both = sites(path)
    from ha_ingress_lab.prometheus_lab import metrics_site

    ours = both["ours"]
    variants = {"direct": ours, "seed-http-server-close": replace(
        ours, haproxy=replace(ours.haproxy, http_server_close=True)), "ours": ours,
        # haproxy's Prometheus exporter scraped every 5 s during the run (issue: metrics cost)
        "ours+metrics-scraped-5s": metrics_site(ours)}
    for t in log_transports:
        if t not in inv.LOG_TRANSPORTS:
            raise ValueError(f"--log-transport: {t!r} is not one of {', '.join(inv.LOG_TRANSPORTS)}")
        if t != ours.haproxy.log_transport:
            variants[f"ours+log-{t}"] = log_variant(ours, t)
    samples: dict[str, list[dict]] = {k: [] for k in variants}
    for r in range(rounds):
        for name, site in variants.items():
            cpus = {"node": SERVER_CPU, "cluster": SERVER_CPU}
            with Lab(site, work / f"tp-{name}", backend="haproxy", cpus=cpus) as lab:
                res = _measure_throughput(lab, direct=name == "direct", duration=duration, connections=connections,
                                          scrape_every=5.0 if name == "ours+metrics-scraped-5s" else 0.0)
                if profile and r == rounds - 1 and name != "direct":
                    res["profile"] = _profile(lab, out / "profile" / name, duration, connections)
            samples[name].append(res)
            log(f"round {r} {name}: {res['rps']:.0f} req/s, {res['tls_new_conn_per_s']} TLS conn/s, CPU us/req: tier haproxy "
                f"{res['haproxy_cpu_us_per_request']}, rsyslog {res['rsyslog_cpu_us_per_request']}, "
                f"backends {res['backend_cpu_us_per_request']}; log lines {res['log_lines']} for {res['requests']} "
                f"requests; non-2xx {res['non_2xx']}")
    report = _throughput_report(ours.mode, samples, rounds, duration, connections)
    report["load"] = {"loadavg_at_end": os.getloadavg(), "cpus_on_machine": os.cpu_count()}
    report["log_transport"] = {name: site.haproxy.log_transport for name, site in variants.items() if name != "direct"}
    cpu = {k: statistics.median(x["haproxy_cpu_us_per_request"] for x in v) for k, v in samples.items() if k != "direct"}
    scraped = samples.get("ours+metrics-scraped-5s") or []
    if scraped and all(s.get("metrics_cpu_share_percent") is not None for s in scraped):
        # issue 13: the scrapes' share of haproxy's CPU during the loaded run (must stay < 2 %), from the
        # CPU of one scrape measured on its own (the loaded runs' own ratio is within the machine's noise)
        report["metrics_cost"] = {"scrape_cpu_ms": summary([s["metrics_scrape_cpu_ms"] for s in scraped]),
                                  "cpu_share_percent": summary([s["metrics_cpu_share_percent"] for s in scraped]),
                                  "scrape_every_s": 5.0, "scrapes_measured": SCRAPES}
    if cpu.get("ours"):
        # haproxy CPU per request with its exporter scraped every 5 s, over without (1.00 = no cost measurable)
        report["ratios"]["metrics-scraped-5s/ours haproxy cpu per request"] = round(cpu["ours+metrics-scraped-5s"] / cpu["ours"], 3)
        # and the req/s it leaves (issue 13: the cost must stay under 2 %)
        report["ratios"]["metrics-scraped-5s/ours req/s"] = _ratio(samples, "rps", "ours+metrics-scraped-5s", "ours", 3)
    report["ratios"].update(cpu_ratios(samples))
    for name in variants:
        if name.startswith("ours+log-"):
            report["ratios"][f"{name}/seed-http-server-close"] = _ratio(samples, "rps", name, "seed-http-server-close")
            report["ratios"][f"{name}/ours req/s"] = _ratio(samples, "rps", name, "ours", 3)
    _write(out / "throughput.json", report)
    return report


def _median_sum(v: list[dict], keys: tuple[str, ...]) -> float:
    return sum(statistics.median(s[k] for s in v) for k in keys)


def cpu_ratios(samples: dict[str, list[dict]]) -> dict[str, float]:
    """Seed's CPU per request over each other variant's (medians): the tier's (haproxy + rsyslog) and the
    whole server side's (+ the backends). Everything server-side shares one CPU, so on an idle machine
    this is the throughput ratio; under load req/s follows the scheduler and this still compares."""
    seed = samples.get("seed-http-server-close")
    out: dict[str, float] = {}
    if not seed:
        return out
    tier = ("haproxy_cpu_us_per_request", "rsyslog_cpu_us_per_request")
    server = (*tier, "backend_cpu_us_per_request")
    for name, v in samples.items():
        if name in ("direct", "seed-http-server-close") or not v or v[0].get("rsyslog_cpu_us_per_request") is None:
            continue
        out[f"tier cpu/request seed-http-server-close/{name}"] = round(_median_sum(seed, tier) / _median_sum(v, tier), 2)
        out[f"server cpu/request seed-http-server-close/{name}"] = round(_median_sum(seed, server) / _median_sum(v, server), 2)
    return out


def _measure_throughput(lab: Lab, *, direct: bool, duration: int, connections: int, scrape_every: float = 0.0) -> dict:
    """One wrk run against the first VIP's master (or, direct, the first cluster), with the CPU
    time haproxy, rsyslog and the backends spent per request."""
    site = lab.site
    lab.wait_vips(lab.masters())
    vip = site.vips[0].address
    master = lab.masters()[vip]
    if direct:
        url = f"http://{site.clusters[0].endpoint}:80/"
        pids: list[int] = []
    else:
        url = f"http://{vip}:80/"
        pids = lab.haproxy_pids(master)
    syslog = lab.daemon_pids(master, "rsyslog") if pids else []
    backends = [p for cl in site.clusters for p in lab.daemon_pids(cl.name, "server")]
    hz = os.sysconf("SC_CLK_TCK")
    wrk(lab.members["client"].ns, url, 1, connections)  # warm-up
    mark = lab.keepalived_log_mark()
    scraper = None
    scrape_ms = None
    if scrape_every:
        node = next(n for n in site.nodes if n.name == master)
        target = f"http://{node.address}:{site.metrics.haproxy_port}/metrics"
        # the exporter's own cost, measured apart from the noise of the loaded run: haproxy CPU
        # for SCRAPES back-to-back scrapes on an idle tier, per scrape
        c0 = _cpu_ticks(pids)
        run(["ip", "netns", "exec", lab.members["client"].ns, "curl", "-s", "-m", "10",
             *[x for _ in range(SCRAPES) for x in ("-o", "/dev/null", target)]], timeout=120)
        scrape_ms = (_cpu_ticks(pids) - c0) / hz * 1e3 / SCRAPES
        scraper = start(["ip", "netns", "exec", lab.members["client"].ns, "sh", "-c",
                         f"while :; do curl -s -o /dev/null -m 4 {target}; sleep {scrape_every:g}; done"], stdin=DEVNULL)
    logfile = lab.node_path(master, layout.shown(layout.LOG_FILE)) if pids else None
    lines0 = _settled_lines(logfile) if logfile else 0
    t0, s0, b0 = _cpu_ticks(pids), _cpu_ticks(syslog), _cpu_ticks(backends)
    try:
        res = wrk(lab.members["client"].ns, url, duration, connections)
    finally:
        if scraper is not None:
            stop_proc(scraper, 1.0)
    # no fault during the run: every keepalived MASTER transition is a false failover
    res["false_failovers"] = len(lab.keepalived_events(mark))
    # the operator's log: lines rsyslog wrote for this run (one per request expected; wrk's
    # connections still open at the end add up to `connections` lines for unfinished requests)
    res["log_lines"] = _settled_lines(logfile) - lines0 if logfile else None
    ticks = _cpu_ticks(pids) - t0
    res["rsyslog_cpu_us_per_request"] = round((_cpu_ticks(syslog) - s0) / hz * 1e6 / res["requests"], 2) if syslog else None
    res["backend_cpu_us_per_request"] = round((_cpu_ticks(backends) - b0) / hz * 1e6 / res["requests"], 2)
    res["haproxy_cpu_s"] = ticks / hz
    if scrape_ms is not None:
        res["metrics_scrape_cpu_ms"] = round(scrape_ms, 3)
        # one scrape every scrape_every s, against haproxy's CPU per second under this load
        res["metrics_cpu_share_percent"] = round(100 * scrape_ms / 1e3 / scrape_every / (ticks / hz / duration), 3) if ticks else None
    res["haproxy_cpu_us_per_request"] = round(ticks / hz * 1e6 / res["requests"], 2) if pids else None
    # second shape: new TLS connections per second on 443 (passed through by the tier, ended by the backend)
    tls_url = f"{site.clusters[0].endpoint}:443" if direct else f"{vip}:443"
    t0 = _cpu_ticks(pids)
    tls = _s_time(lab, tls_url, duration)
    res["tls_new_conn_per_s"] = tls["conn_per_s"]
    res["tls_connections"] = tls["connections"]
    res["haproxy_cpu_us_per_tls_connection"] = (round((_cpu_ticks(pids) - t0) / hz * 1e6 / tls["connections"], 2)
                                                if pids and tls["connections"] else None)
    return res


# kernel and haproxy functions whose inclusive share says where a request's CPU goes
PROFILE_SYMBOLS = ("tcp_sendmsg", "tcp_recvmsg", "udp_sendmsg", "unix_dgram_sendmsg", "net_rx_action",
                   "sess_build_logline", "__send_log", "sink_write", "ring_write", "process_stream", "h1_process_demux",
                   "h1_snd_buf", "http_process_request", "http_wait_for_request", "epoll_wait", "__x64_sys_epoll_wait")


def _profile(lab: Lab, where: Path, duration: int, connections: int) -> dict:
    """perf record (cpu-clock: this container has no hardware counters) on the tier haproxy of the first
    VIP's master during one more wrk run; the share per DSO and the inclusive share of PROFILE_SYMBOLS.
    Reports: <where>/perf-dso.txt, perf-symbols.txt, perf-children.txt."""
    site = lab.site
    vip = site.vips[0].address
    pids = lab.haproxy_pids(lab.masters()[vip])
    where.mkdir(parents=True, exist_ok=True)
    data = where / "perf.data"
    wrk = start(["ip", "netns", "exec", lab.members["client"].ns, "taskset", "-c", WRK_CPU, "wrk", "-t1",
                 f"-c{connections}", f"-d{duration + 2}s", f"http://{vip}:80/"], stdout=DEVNULL, stdin=DEVNULL)
    try:
        time.sleep(1)
        run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-o", str(data), "--pid",
             ",".join(map(str, pids)), "--", "sleep", str(duration)], timeout=duration + 60)
    finally:
        wrk.wait(timeout=duration + 30)
    report = ["perf", "report", "-i", str(data), "--stdio", "--percent-limit", "0.5"]
    dso = run([*report, "--no-children", "--sort", "dso", "-g", "none"], timeout=300).stdout
    (where / "perf-dso.txt").write_text(dso)
    (where / "perf-symbols.txt").write_text(run([*report, "--no-children", "--sort", "dso,sym", "-g", "none"], timeout=300).stdout)
    children = run([*report, "--children", "--sort", "sym", "-g", "none"], timeout=300).stdout
    (where / "perf-children.txt").write_text(children)
    shares = {m.group(2): float(m.group(1)) for m in re.finditer(r"^\s+([\d.]+)%\s+(\S+)\s*$", dso, re.M)}
    inclusive: dict[str, float] = {}
    for line in children.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+([\d.]+)%\s+\[[.k]\]\s+(\S+)", line)
        if m and m.group(3) in PROFILE_SYMBOLS:
            inclusive[m.group(3)] = float(m.group(1))
    samples = re.search(r"# Samples: (\S+)\s+of event", dso)
    return {"dso_percent": shares, "inclusive_percent": inclusive, "reports": str(where),
            "samples": samples.group(1) if samples else None}


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _settled_lines(path: Path, quiet: float = 1.0, timeout: float = 20.0) -> int:
    """The log file's line count once it stopped growing for `quiet` s (rsyslog and haproxy's
    ring forwarder write asynchronously)."""
    n, since, end = _lines(path), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.2)
        m = _lines(path)
        if m != n:
            n, since = m, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return n


def _s_time(lab: Lab, target: str, duration: int) -> dict:
    """`openssl s_time -new`: full TLS handshakes (no session reuse) for `duration` s, one at a time, pinned with wrk."""
    argv = ["ip", "netns", "exec", lab.members["client"].ns, "taskset", "-c", WRK_CPU,
            "openssl", "s_time", "-connect", target, "-new", "-time", str(duration)]
    text = run(argv, timeout=duration + 30, check=False).stdout or ""
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", text)
    if not m:
        return {"connections": 0, "conn_per_s": 0.0}
    n, secs = int(m.group(1)), float(m.group(2))
    return {"connections": n, "conn_per_s": round(n / secs, 1) if secs else 0.0}


def _ratio(samples: dict[str, list[dict]], key: str, a: str, b: str, digits: int = 2) -> float | None:
    ma, mb = (statistics.median(s[key] for s in samples[k]) for k in (a, b))
    return round(ma / mb, digits) if mb else None


def _optional_summary(samples: list[dict], key: str) -> dict | None:
    return summary([s[key] for s in samples]) if samples and samples[0][key] is not None else None


def _throughput_report(mode: str, samples: dict[str, list[dict]], rounds: int, duration: int, connections: int) -> dict:
    """The throughput.json record: per variant summaries and samples, and the median ratios."""
    med = {k: statistics.median(s["rps"] for s in v) for k, v in samples.items()}
    return {
        "mode": mode,
        "pinning": {"wrk": f"taskset -c {WRK_CPU} (1 thread, {connections} connections)",
                    "tier haproxy, keepalived, rsyslog, backend haproxy": f"taskset -c {SERVER_CPU}",
                    "cpus_on_machine": os.cpu_count()},
        "backend": "haproxy in each cluster namespace answering `http-request return` (static); on 443 it ends "
                   "TLS (self-signed P-256), the tier passes TLS through",
        "tls_shape": "openssl s_time -new (full handshakes, one at a time) on the first VIP's 443",
        "rounds": rounds, "duration_s": duration, "order": list(samples),
        "variants": {
            name: {"rps": summary([s["rps"] for s in v]),
                   "haproxy_cpu_us_per_request": _optional_summary(v, "haproxy_cpu_us_per_request"),
                   "rsyslog_cpu_us_per_request": _optional_summary(v, "rsyslog_cpu_us_per_request"),
                   "backend_cpu_us_per_request": summary([s["backend_cpu_us_per_request"] for s in v]),
                   "non_2xx": sum(s["non_2xx"] for s in v),
                   # the operator's log: lines written vs requests wrk completed, summed over the rounds
                   **({"log_lines": sum(s["log_lines"] for s in v), "requests": sum(s["requests"] for s in v),
                       "log_lines_per_request": summary([round(s["log_lines"] / s["requests"], 4) for s in v])}
                      if v and v[0].get("log_lines") is not None else {}),
                   "false_failovers": sum(s.get("false_failovers", 0) for s in v),
                   "tls_new_conn_per_s": summary([s["tls_new_conn_per_s"] for s in v]),
                   "haproxy_cpu_us_per_tls_connection": _optional_summary(v, "haproxy_cpu_us_per_tls_connection"),
                   "samples": v}
            for name, v in samples.items()
        },
        "ratios": {
            "ours/seed-http-server-close": round(med["ours"] / med["seed-http-server-close"], 2),
            "ours/direct": round(med["ours"] / med["direct"], 2),
            "seed-http-server-close/direct": round(med["seed-http-server-close"] / med["direct"], 2),
            "tls-conn ours/seed-http-server-close": _ratio(samples, "tls_new_conn_per_s", "ours", "seed-http-server-close"),
            "tls-conn ours/direct": _ratio(samples, "tls_new_conn_per_s", "ours", "direct"),
        },
    }


# --------------------------------------------------------------------------- advert interval curve

CURVE_INTERVALS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def advert_curve(path: Path, out: Path, work: Path, intervals: tuple[float, ...] = CURVE_INTERVALS, runs: int = 5,
                 seconds: float = 60, log=print) -> dict:
    """Advert interval vs node-death failover time vs false failovers under saturation.

    For each interval (ours otherwise): `runs` node-death scenarios (outage), then one lab with the
    tier's CPU saturated for `seconds` (wrk at full rate on every VIP + a busy loop per CPU in every
    node's namespace) counting keepalived MASTER transitions (false failovers). Writes
    <out>/advert-curve.json."""
    base = inv.load(path)
    points = []
    for a in intervals:
        site = replace(base, vrrp=replace(base.vrrp, advert_int=a))
        deaths = []
        for i in range(runs):
            with Lab(site, work / f"curve-{a}") as lab:
                deaths.append(failover_scenarios.run(lab, "node-death").record())
            log(f"advert {a}: node-death #{i}: outage {deaths[-1]['outage_ms']} ms")
        with Lab(site, work / f"curve-{a}-saturated") as lab:
            sat = failover_scenarios.saturated(lab, seconds)
        log(f"advert {a}: saturated {seconds}s: {sat['false_failovers']} false failovers ({sat['wrk_rps']} req/s)")
        points.append({"advert_int": a, "runs": runs,
                       "node_death_outage_ms": summary([d["outage_ms"] for d in deaths]),
                       "node_death_failed_requests": summary([d["failed_requests"] for d in deaths]),
                       "false_failovers": sat["false_failovers"], "saturated": sat})
        report = {"mode": base.mode, "inventory": str(path), "saturation_seconds": seconds,
                  "load": {"cpus_on_machine": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
                  "points": points}
        _write(out / "advert-curve.json", report)
    return report


def table(records: list[dict]) -> str:
    lines = ["| mode | scenario | settings | runs | outage ms min/med/max | failed min/med/max | cluster out ms min/med/max "
             "| long-lived resets min/med/max | state changes min/med/max |",
             "|---|---|---|---|---|---|---|---|---|"]

    def mmm(v: dict | None) -> str:
        return f"{v['min']:g} / {v['median']:g} / {v['max']:g}" if v else "-"
    for r in records:
        o, f, c = r["outage_ms"], r["failed_requests"], r.get("cluster_out_ms")
        out = f"{c['min']:.0f} / {c['median']:.0f} / {c['max']:.0f}" if c else "-"
        lines.append(f"| {r['mode']} | {r['scenario']} | {r['settings']} | {r['runs']} | "
                     f"{o['min']:.0f} / {o['median']:.0f} / {o['max']:.0f} | {mmm(f)} | {out} | "
                     f"{mmm(r.get('long_lived_resets'))} | {mmm(r.get('state_changes'))} |")
    return "\n".join(lines)



def failover_report(inventories: list[Path], out: Path, runs: int = 5, scenarios: tuple[str, ...] = (),
                    settings: tuple[str, ...] = (), reload_seconds: float | None = None,
                    probe_timeout: float = 0.3) -> list[dict]:
    """`invoke bench --failover`: run, print the table, write <out>/bench/failover.json (lab work in <out>/lab)."""
    if reload_seconds is not None:
        failover_scenarios.RELOAD_SECONDS = float(reload_seconds)
    records = failover_bench(inventories, out / "bench", out / "lab", runs, scenarios or failover_scenarios.SCENARIOS,
                             settings_list=settings or ("ours", "seed"), probe_timeout=probe_timeout)
    print(table(records))
    print(f"wrote {out / 'bench' / 'failover.json'}")
    return records


def advert_curve_report(inventory: Path, out: Path, runs: int = 5, seconds: float = 60,
                        intervals: tuple[float, ...] = ()) -> dict:
    """`invoke bench --advert-curve`: run, print the curve, write <out>/bench/advert-curve.json."""
    report = advert_curve(inventory, out / "bench", out / "lab", intervals or CURVE_INTERVALS, runs, seconds)
    print("| advert_int s | node-death outage ms min/med/max | false failovers (saturated) |")
    for p in report["points"]:
        o = p["node_death_outage_ms"]
        print(f"| {p['advert_int']} | {o['min']:.0f} / {o['median']:.0f} / {o['max']:.0f} | {p['false_failovers']} |")
    print(f"wrote {out / 'bench' / 'advert-curve.json'}")
    return report


def throughput_report(inventory: Path, out: Path, rounds: int = 3, log_transports: tuple[str, ...] = (),
                      profile: bool = False) -> dict:
    """`invoke bench --throughput`: run, print per-variant figures, write <out>/bench/throughput.json."""
    report = throughput_bench(inventory, out / "bench", out / "lab", rounds, log_transports=log_transports, profile=profile)
    for name, v in report["variants"].items():
        cpu, sl = v["haproxy_cpu_us_per_request"], v["rsyslog_cpu_us_per_request"]
        logs = f"  log lines {v['log_lines']} / {v['requests']} requests" if "log_lines" in v else ""
        print(f"{name:24} {v['rps']['median']:9.0f} req/s (median)  tier haproxy {cpu['median'] if cpu else '-'} "
              f"+ rsyslog {sl['median'] if sl else '-'} us CPU/request{logs}")
    for name, v in report["variants"].items():
        prof = next((x["profile"] for x in v["samples"] if "profile" in x), None)
        if prof:
            print(f"profile {name}: {prof['dso_percent']} inclusive {prof['inclusive_percent']}")
    if "metrics_cost" in report:
        print(f"metrics cost: {report['metrics_cost']}")
    print(f"ratios: {report['ratios']}")
    print(f"wrote {out / 'bench' / 'throughput.json'}")
    return report


# --------------------------------------------------------------------------- alerts


def alerts_report(inventories: list[Path], out: Path, scrape: float = 1.0, evaluation: float = 1.0,
                  scenarios: tuple[str, ...] = ()) -> dict:
    """`invoke bench --alerts`: the shipped rules (their own `for` durations) on a real Prometheus scraping
    the lab through every alert scenario; time to fire (from the fault) and to clear (from the heal) per
    alert -> <out>/bench/alerts.json."""
    from ha_ingress_lab import alert_scenarios
    from ha_ingress_lab.prometheus_lab import Prometheus, metrics_site

    records: list[dict] = []
    runs: list[dict] = []
    for path in inventories:
        site = metrics_site(inv.load(path))
        with Lab(site, out / "lab" / f"alerts-{site.mode}") as lab:
            lab.wait_vips(lab.masters())
            alert_scenarios.prepare(lab)
            with Prometheus(lab, scrape=scrape, evaluation=evaluation, for_scale=1.0) as prom:
                prom.wait_targets_up()
                for name in scenarios or alert_scenarios.SCENARIOS:
                    res = alert_scenarios.run(lab, prom, name, steady_s=30.0, quiet_timeout=300.0)
                    records += res.records()
                    runs.append({"mode": str(site.mode), "scenario": name, "quiet_before": res.quiet_before,
                                 "fired": sorted(res.fired()), "missing": sorted(res.missing()),
                                 "unexpected": sorted(res.unexpected()), "healed_s": res.healed_s,
                                 "pending_only": res.pending_only(), **res.notes})
                    print(f"{site.mode} {name}: fired {sorted(res.fired()) or '-'}; unexpected {sorted(res.unexpected()) or '-'}; "
                          f"all clear {res.healed_s} s after the heal", flush=True)
    report = {
        "scrape_interval_s": scrape, "evaluation_interval_s": evaluation,
        "rules": "docs/prometheus/alerts.yml, shipped `for` durations",
        "poll_interval_s": 0.25,
        "note": "time_to_fire_s: from the fault to the first /api/v1/alerts poll showing it firing (includes detection, "
                "scrape and evaluation lag and the alert's `for`); time_to_clear_s: from the heal to the first poll "
                "without it. runs[].pending_only: alerts that went pending and never fired (transients shorter than their `for`). "
                "Shared, noisy 2-core machine (load average about 12 during the run).",
        "records": records, "runs": runs,
    }
    _write(out / "bench" / "alerts.json", report)
    from ha_ingress_lab.alert_scenarios import table as alert_table

    print(alert_table(records))
    print(f"wrote {out / 'bench' / 'alerts.json'}")
    return report
