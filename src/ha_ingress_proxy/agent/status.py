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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ha_ingress_proxy import layout

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


def collect(root: Path = Path("/"), ip_json: Optional[Path] = None, addresses: Optional[list[tuple[str, str]]] = None) -> dict[str, Any]:
    """The state apply wrote, plus what holds now. StateError (one line) for an unusable state file."""
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
    report["keepalived"] = {"running": obs.keepalived_up, "pid": obs.keepalived_pid}
    report["haproxy_process"] = {"running": obs.haproxy_up, "pid": obs.haproxy_pid}
    report["drain"] = {"drained": obs.drained, "file": layout.shown(layout.DRAIN_FILE),
                       **({"info": obs.drain_info or {}} if obs.drained else {})}
    report["held"] = sorted(v.address for v in obs.vips if v.held)
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
    ka = report.get("keepalived") or {}
    lines.append(f"keepalived {'running, pid ' + str(ka['pid']) if ka.get('running') else 'not running'}")
    hp = report.get("haproxy_process") or {}
    lines.append(f"haproxy   {'running, pid ' + str(hp['pid']) if hp.get('running') else 'not running'}")
    dr = report.get("drain") or {}
    if dr.get("drained"):
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
