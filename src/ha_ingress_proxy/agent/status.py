"""`status`: what apply decided, which VIPs this host holds now, and haproxy's backends.

VRRP state is derived, not asked: a VIP on this host means keepalived is
MASTER for it; a VIP elsewhere with keepalived running means BACKUP (or
FAULT: keepalived gives its VIPs up when the haproxy check fails, and that
looks the same from here); keepalived not running means STOPPED. Asking
keepalived itself (SIGUSR1 -> /tmp/keepalived.data) writes files and signals
the daemon on every call, so status does not.

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
from ha_ingress_proxy.errors import UserError

from . import drain, files, haproxy_api, sources
from .state import read as read_state


def keepalived_pid(root: Path) -> Optional[int]:
    """keepalived's pid when its pid file names a live keepalived (via <root>/proc), else None."""
    try:
        pid = int(files.read_limited(root, layout.KEEPALIVED_PIDFILE, 64).split()[0])
        comm = files.read_limited(root, f"proc/{pid}/comm", 64).decode("utf-8", "replace").strip()
    except (OSError, ValueError, IndexError, UserError):  # a FIFO there must not block status
        return None
    return pid if comm == "keepalived" else None


def show_stat(sock_path: Path, timeout: float = haproxy_api.SOCKET_TIMEOUT) -> dict[str, dict[str, str]]:
    """listener -> server -> status (UP, DOWN, MAINT, ...) from haproxy's `show stat`. OSError if unreachable."""
    return haproxy_api.servers(haproxy_api.stat_rows(sock_path, timeout))


def collect(root: Path = Path("/"), ip_json: Optional[Path] = None, addresses: Optional[list[tuple[str, str]]] = None) -> dict[str, Any]:
    """The state apply wrote, plus what holds now. StateError (one line) for an unusable state file."""
    root = Path(root)
    state = read_state(root)
    if state is None:
        return {
            "ok": False,
            "result": "not applied",
            "reason": f"no readable {layout.shown(layout.STATE_FILE)}: apply has not run since boot",
        }
    report = state.to_dict()
    if not state.ok:
        return report
    if addresses is None:
        try:
            addresses = sources.host_addresses(ip_json)
        except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
            addresses = []
            report["addresses_error"] = " ".join(str(exc).split())
    held_here = {a for _, a in addresses}
    pid = keepalived_pid(root)
    report["keepalived"] = {"running": pid is not None, "pid": pid}
    drained = drain.read_flag(root) != 0
    report["drain"] = {"drained": drained, "file": layout.shown(layout.DRAIN_FILE),
                       **({"info": drain.read_info(root) or {}} if drained else {})}
    vrrp = {}
    for vip in state.vips:
        if vip in held_here:
            vrrp[vip] = "MASTER"
        elif pid is not None:
            vrrp[vip] = "FAULT" if drained else "BACKUP"  # BACKUP may be FAULT too; see the module docstring
        else:
            vrrp[vip] = "STOPPED"
    report["held"] = sorted(v for v in state.vips if v in held_here)
    report["vrrp"] = vrrp
    try:
        rows = haproxy_api.stat_rows(root / layout.HAPROXY_SOCKET)
        report["backends"] = haproxy_api.servers(rows)
        report["haproxy"] = {"reachable": True, "drain_flag": haproxy_api.drain_flag(rows)}
    except OSError as exc:
        report["backends"] = {}
        report["haproxy"] = {"reachable": False, "error": f"{layout.shown(layout.HAPROXY_SOCKET)}: {exc.strerror or exc}"}
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
    lines.append(f"source    {report['source']}: {report['where']}")
    for line in report.get("overrides") or []:
        lines.append(f"override  {line}")
    lines.append(f"address   {report.get('address_check')}")
    lines.append(f"vips      {', '.join(report['vips'])} (from {report.get('vips_source')})")
    masters = set(report.get("masters") or [])
    ka = report.get("keepalived") or {}
    lines.append(f"keepalived {'running, pid ' + str(ka['pid']) if ka.get('running') else 'not running'}")
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
        held = "held here" if state == "MASTER" else "not held here"
        lines.append(f"vrrp      {vip}: {state} ({held}; this node {plan})")
    hap = report.get("haproxy") or {}
    if not hap.get("reachable"):
        lines.append(f"haproxy   stats socket unreachable: {hap.get('error')}")
    elif hap.get("drain_flag"):
        lines.append("haproxy   drain flag set: every HTTP response says Connection: close")
    for listener, servers in sorted((report.get("backends") or {}).items()):
        lines.append(f"backends  {listener}: " + ", ".join(f"{s} {st}" for s, st in sorted(servers.items())))
    for w in report.get("warnings") or []:
        lines.append(f"warning   {w}")
    return "\n".join(lines)
