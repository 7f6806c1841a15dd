"""`status`: what apply decided, which VIPs this host holds now, and haproxy's backends.

The node's facts (role, VIPs held, keepalived and haproxy alive, VRRP state
per VIP) come from live.observe(), the one function the Prometheus exporter
(`ha-ingress-proxy metrics`) reads too, so `status` and a scrape can never
disagree. How the VRRP state is derived (and why keepalived is not asked) is
in live.py: the addresses on the interface and keepalived's liveness, read now.

Backends come from haproxy's stats socket (`show stat`), read with a plain
unix socket: no subprocess, no haproxy binary needed.

Drain (`ha-ingress-proxy drain`): the drain file under /var/lib/ha-ingress-proxy
(kept across reboots) says whether keepalived holds every instance in FAULT;
a drained node's VIPs not held here are reported FAULT, not BACKUP.

Mode bgp has no keepalived and no VRRP state; instead (bgp_report): FRR's view
through vtysh (frr.py: each peer's BGP session and BFD state, what is
advertised to it, so which VIPs this node announces now), and the gate's view,
computed by the gate's own checks (haproxy answers `show info`; the drain
file). When FRR does not answer, that is one line and the rest still prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from collections.abc import Sequence

from ha_ingress_proxy import inventory, layout
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.plan import plan

from . import haproxy_api, live
from .state import read as read_state

# status has always printed keepalived's words; the exporter uses lower-case state names
SHOWN = {"master": "MASTER", "backup": "BACKUP", "fault": "FAULT", "down": "STOPPED", None: "UNKNOWN"}


def keepalived_pid(root: Path) -> Optional[int]:
    """keepalived's pid when its pid file names a live keepalived (via <root>/proc), else None."""
    return live.keepalived_pid(root)


def show_stat(sock_path: Path, timeout: float = haproxy_api.SOCKET_TIMEOUT) -> dict[str, dict[str, str]]:
    """listener -> server -> status (UP, DOWN, MAINT, ...) from haproxy's `show stat`. OSError if unreachable."""
    return haproxy_api.servers(haproxy_api.stat_rows(sock_path, timeout))


def bgp_report(root: Path, site: inventory.Site, node: str, vtysh: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Mode bgp: FRR's sessions, BFD and advertised routes (vtysh; default `vtysh -N <pathspace>`), the VIPs
    announced now (advertised to at least one Established peer) and the gate's checks as they answer now."""
    from . import bgp_gate, frr

    view = plan(site, node).bgp
    assert view is not None, f"site {site.site} is not mode bgp"
    vtysh = list(vtysh or frr.vtysh_argv(view.pathspace))
    now = frr.observe(vtysh, [p.address for p in view.peers])
    gate = bgp_gate.Gate(view, vtysh, Path(root) / layout.STATUS_SOCKET, Path(root) / layout.DRAIN_FILE, log=lambda line: None)
    healthy, drained = gate.healthy(), gate.drained()
    return {
        "frr": now.to_dict(),
        "announced": [v.split("/")[0] for v in now.announced(view.vips)] if now.running else None,
        "gate": {"haproxy_answers": healthy, "drained": drained, "announces": healthy and not drained,
                 "rise": view.gate_rise, "fall": view.gate_fall, "interval_ms": view.gate_interval_ms},
    }


def collect(root: Path = Path("/"), ip_json: Optional[Path] = None, addresses: Optional[list[tuple[str, str]]] = None,
            vtysh: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The state apply wrote, plus what holds now. StateError (one line) for an unusable state file.
    vtysh: mode bgp's FRR command (default `vtysh -N <pathspace>`)."""
    root = Path(root)
    read_state(root)  # an unusable state file is status's error (live.observe only notes it)
    obs = live.observe(root, ip_json=ip_json, addresses=addresses)
    if obs.state is None:
        return {
            "ok": False,
            "result": "not applied",
            "reason": f"no readable {layout.shown(layout.STATE_FILE)}: apply has not run since boot",
        }
    report = obs.state.to_dict()
    if not obs.applied:
        return report
    if obs.addresses_error:
        report["addresses_error"] = obs.addresses_error
    bgp = obs.state.mode == inventory.Mode.BGP.value
    if not bgp:
        report["keepalived"] = {"running": obs.keepalived_up, "pid": obs.keepalived_pid}
        report["haproxy_watch"] = {"file": layout.shown(layout.HAPROXY_DOWN), "value": obs.haproxy_down}
    report["haproxy_process"] = {"running": obs.haproxy_up, "pid": obs.haproxy_pid}
    report["drain"] = {"drained": obs.drained, "file": layout.shown(layout.DRAIN_FILE),
                       **({"info": obs.drain_info or {}} if obs.drained else {})}
    report["held"] = sorted(v.address for v in obs.vips if v.held)
    if bgp:
        try:
            from .apply import load_site

            report["bgp"] = bgp_report(root, load_site(root), obs.state.node, vtysh)
        except UserError as exc:
            report["bgp"] = {"error": " ".join(exc.lines)}
    else:
        report["vrrp"] = {v.address: SHOWN[v.state] for v in obs.vips}
    try:
        rows = haproxy_api.stat_rows(root / layout.STATUS_SOCKET)  # level user: read-only
        report["backends"] = haproxy_api.servers(rows)
        report["haproxy"] = {"reachable": True, "drain_flag": haproxy_api.drain_flag(rows)}
    except OSError as exc:
        report["backends"] = {}
        report["haproxy"] = {"reachable": False, "error": f"{layout.shown(layout.STATUS_SOCKET)}: {exc.strerror or exc}"}
    return report


def exit_code(report: dict[str, Any]) -> int:
    return 0 if report.get("ok") else 1


def bgp_lines(bgp: dict[str, Any], dr: dict[str, Any]) -> list[str]:
    """Mode bgp's lines: drain, FRR (one line when it does not answer), each peer, what is announced, the gate.
    dr is the report's "drain" object ({"drained", "file", "info"})."""
    lines = []
    if dr.get("drained"):
        info = dr.get("info") or {}
        since = f" since {info['since']}" if info.get("since") else ""
        withdrew = f"; withdrew {', '.join(info['withdrew'])}" if info.get("withdrew") else ""
        left = (f"; {info['streams_left_at_move']} stream(s) open at the withdraw (reset)"
                if info.get("withdrew") and info.get("streams_left_at_move") is not None else "")
        lines.append(f"drain     DRAINED{since} ({dr['file']}: the bgp-gate announces nothing while it is set{withdrew}{left}; "
                     "kept across reboot; `ha-ingress-proxy resume` undoes it)")
    else:
        lines.append("drain     no (serving)")
    if bgp.get("error"):
        return [*lines, f"bgp       unknown: {bgp['error']}"]
    f = bgp.get("frr") or {}
    if not f.get("running"):
        lines.append(f"frr       not running: {f.get('error')}")
    else:
        for peer in f.get("peers") or []:
            bfd = f"BFD {peer['bfd']}" if peer.get("bfd") else "no BFD session"
            sent = ", ".join(a.split("/")[0] for a in peer.get("advertised") or []) or "nothing"
            lines.append(f"bgp       peer {peer['address']}: {peer.get('bgp') or 'unknown to bgpd'}, {bfd}; advertised {sent}")
        announced = bgp.get("announced") or []
        hint = ("; the gate's checks pass: is ha-ingress-proxy-bgp-gate.service running (or still counting rise)?"
                if not announced and (bgp.get("gate") or {}).get("announces") else "")
        lines.append(f"announced {', '.join(announced) if announced else 'none'} (advertised to an Established peer, "
                     f"from FRR){hint}")
    g = bgp.get("gate") or {}
    why = ("haproxy answers and the node is not drained" if g.get("announces") else
           "; ".join(w for w in ("haproxy does not answer" if not g.get("haproxy_answers") else "",
                                 "node drained" if g.get("drained") else "") if w))
    lines.append(f"gate      {'announces' if g.get('announces') else 'withdraws'}: {why} "
                 f"(checks every {g.get('interval_ms')} ms, rise {g.get('rise')}, fall {g.get('fall')})")
    return lines


def watch_line(watch: dict[str, Any]) -> str:
    """watch-haproxy's track_file as keepalived reads it (docs/lab.md, haproxy death)."""
    value, path = watch.get("value"), watch.get("file")
    if value is None:
        return (f"watch     {path} absent: keepalived's 1 s check alone notices a dead haproxy "
                "(ha-ingress-proxy-haproxy-watch.service has not run, or vrrp.haproxy_watch is false)")
    if value:
        return (f"watch     {path} says {value}: haproxy's master is gone (or restarted without its worker yet); "
                "keepalived holds every VRRP instance in FAULT until it says 0")
    return f"watch     {path} says 0: haproxy serving (keepalived's track_file)"


def human(report: dict[str, Any]) -> str:
    """The report for a person: one fact a line."""
    lines = []
    if not report.get("ok"):
        lines.append(f"state     {report.get('result', 'refused').upper()}: {report.get('reason')}")
        lines.append("vips      none claimed (keepalived.conf removed; keepalived does not start)")
        return "\n".join(lines)
    role = f" ({report['role']})" if report.get("role") else ""
    lines.append(f"state     APPLIED: node {report['node']}{role} of site {report['site']} ({report.get('mode')})")
    where = report["where"]  # some sources already lead with their name ("host addresses: ...")
    lines.append(f"source    {where if where.startswith(report['source']) else report['source'] + ': ' + where}")
    for line in report.get("overrides") or []:
        lines.append(f"override  {line}")
    lines.append(f"address   {report.get('address_check')}")
    lines.append(f"vips      {', '.join(report['vips'])} (from {report.get('vips_source')})")
    masters = set(report.get("masters") or [])
    if "keepalived" in report:
        ka = report.get("keepalived") or {}
        lines.append(f"keepalived {'running, pid ' + str(ka['pid']) if ka.get('running') else 'not running'}")
    hp = report.get("haproxy_process") or {}
    lines.append(f"haproxy   {'running, pid ' + str(hp['pid']) if hp.get('running') else 'not running'}")
    if "haproxy_watch" in report:
        lines.append(watch_line(report["haproxy_watch"]))
    dr = report.get("drain") or {}
    if "bgp" in report:
        lines += bgp_lines(report["bgp"], dr)
    elif dr.get("drained"):
        info = dr.get("info") or {}
        since = f" since {info['since']}" if info.get("since") else ""
        gave = f"; gave up {', '.join(info['gave_up'])}" if info.get("gave_up") else ""
        left = (f"; {info['streams_left_at_move']} stream(s) open at the move"
                if info.get("streams_left_at_move") is not None and info.get("gave_up") else "")
        lines.append(f"drain     DRAINED{since} ({dr['file']}: every VRRP instance in FAULT{gave}{left}; "
                     "kept across reboot; `ha-ingress-proxy resume` undoes it)")
    else:
        lines.append("drain     no (serving)")
    for vip, state in sorted((report.get("vrrp") or {}).items()):
        plan = "masters it when all nodes are healthy" if vip in masters else "is a backup for it"
        held = "held here" if vip in (report.get("held") or []) else "not held here"
        lines.append(f"vrrp      {vip}: {state} ({held}; this node {plan})")
    hap = report.get("haproxy") or {}
    if not hap.get("reachable"):
        lines.append(f"haproxy   stats socket unreachable: {hap.get('error')}")
    elif hap.get("drain_flag"):
        lines.append("haproxy   drain flag set: every HTTP response says Connection: close")
    for listener, servers in sorted((report.get("backends") or {}).items()):
        lines.append(f"backends  {listener}: " + ", ".join(f"{s} {st}" for s, st in sorted(servers.items())))
    if report.get("stats_cert"):
        lines.append(f"stats     https on {report.get('stats_bind')}, certificate {report['stats_cert']} "
                     f"({report.get('stats_cert_source')})")
        lines.append(f"stats     certificate SHA-256 {report.get('stats_cert_sha256')}")
    elif report.get("stats_bind"):
        lines.append(f"stats     plain http on {report.get('stats_bind')}")
    for w in report.get("warnings") or []:
        lines.append(f"warning   {w}")
    return "\n".join(lines)
