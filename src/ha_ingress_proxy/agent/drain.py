"""`drain` and `resume`: take this node out of service for maintenance, and bring it back.

drain, in order:

1. Refuse (unless --force) when this node holds a VIP and no other node looks
   healthy. VRRP backups are silent, so a node cannot see its backups'
   keepalived; it asks each other node's haproxy instead (a TCP connect to its
   stats listener, `stats.bind: node`). Where that cannot be asked (a stats
   bind shared by all nodes) it decides after the move (step 5).
2. Set haproxy's drain flag (runtime API): every HTTP response from now on
   says `Connection: close`, so keep-alive clients leave on their next
   response and reconnect while the VIP is still here.
3. Wait until no stream that was open at step 2 is left and no HTTP connection
   sits idle, or until --wait runs out. Streams still open then (a TLS
   passthrough stream, a long download) are reset by the move: their next
   packet reaches the new master, which knows nothing of them. Their number is
   reported.
4. Move: write 1 to the drain file (keepalived's track_file, weight 0): every
   VRRP instance goes to FAULT at once; a master removes its VIPs and sends a
   priority-0 advert, and a backup takes over after its skew time (< one
   advert interval). For a short grace the node keeps accepting packets for
   the VIPs it gave up (a local route; `arp_ignore=1` keeps it from answering
   ARP for them), so a request sent before the client's ARP entry changed is
   still served here instead of being lost.
5. After the grace: every VIP given up must answer from another node (a TCP
   connect to it from here). If one does not, the drain is undone and refused
   (unless --force): this node takes the VIP back.

The drain file lives under /var/lib/ha-ingress-proxy, so a drained node stays
drained across a reboot (keepalived starts its instances in FAULT); resume
writes 0. drain.json beside it records when and what drain did, for status.

Mode bgp (drain_bgp, resume_bgp): the same verb as a graceful withdraw. Steps
1-3 are the same functions (step 1 refuses, unless --force, also when the other
nodes' haproxy cannot be asked: there is no step 5, a connect to the VIP never
leaves a bgp node). Step 4 writes the same drain file, which the bgp-gate
honours: it removes the `network` lines, bgpd sends the withdraw, and drain
watches FRR (vtysh, frr.py) until no VIP is advertised to any peer. Every
connection still open here then is hashed by the routers to another node and
reset, which is why --wait matters more in this mode. resume_bgp writes 0 and
waits until FRR announces the VIPs again.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ha_ingress_proxy import inventory, layout
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.plan import BACKUP_GRACE, BgpView, plan
from ha_ingress_proxy.subproc import run

from . import files, frr, haproxy_api, sources

DEFAULT_WAIT = 10.0  # seconds; haproxy closes idle keep-alive connections after `timeout http-keep-alive` (10s)
GRACE = float(BACKUP_GRACE)  # s the node keeps accepting packets for a VIP it gave up: the grace of a preemption move
GRACE_METRIC = "4242"  # marks the grace routes (a kernel address route has metric 0)
MOVE_TIMEOUT = 3.0  # keepalived must have removed the VIPs by then
CHECK_TIMEOUT = 2.0  # connect timeout of the health checks
POLL = 0.1
WITHDRAW_TIMEOUT = 5.0  # mode bgp: the gate withdraws within gate_fall checks (0.4 s with the defaults)
ANNOUNCE_TIMEOUT = 10.0  # mode bgp, resume: gate_rise checks, then bgpd's update


@dataclass
class Outcome:
    ok: bool
    lines: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the drain file


def read_flag(root: Path) -> int:
    """The drain file's value as keepalived reads it: a missing or empty file is 0."""
    return files.track_file_value(root, layout.DRAIN_FILE) or 0


def read_info(root: Path) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(files.read_limited(root, layout.DRAIN_INFO, 1 << 20).decode("utf-8"))
    except (OSError, ValueError, UserError):
        return None
    return data if isinstance(data, dict) else None


def _write_info(root: Path, info: dict[str, Any]) -> None:
    """drain.json: what drain did, in either mode (read_info reads it back)."""
    files.write_atomic(root, layout.DRAIN_INFO, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode(), 0o644)


def _write_flag(root: Path, value: int) -> None:
    # write_atomic renames into place: keepalived's inotify sees IN_MOVED_TO and reads the new value
    files.write_atomic(root, layout.DRAIN_FILE, f"{value}\n".encode(), 0o644)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- what the node knows


def _applied_state(root: Path):
    from .state import read

    state = read(root)
    if state is None:
        raise UserError(f"{layout.shown(layout.STATE_FILE)}: not readable: `ha-ingress-proxy apply` has not run since boot")
    if not state.ok:
        raise UserError(f"this node is not applied ({state.reason}): it holds no VIP, nothing to drain")
    return state


def _site(root: Path) -> inventory.Site:
    from .apply import load_site

    try:
        return load_site(root)
    except UserError as exc:
        raise UserError(*exc.lines) from None


def _held(vips: list[str], ip_json: Optional[Path]) -> list[str]:
    here = {a for _, a in sources.host_addresses(ip_json)}
    return [v for v in vips if v in here]


def _tcp_ok(address: str, port: int, timeout: float = CHECK_TIMEOUT) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def peer_haproxy(site: inventory.Site, node: inventory.Node) -> Optional[bool]:
    """Does the other node's haproxy answer (its stats listener)? None when that cannot be asked."""
    if site.stats.bind != "node":
        return None
    return _tcp_ok(node.address, site.stats.port)


# --------------------------------------------------------------------------- haproxy


def _http_listeners(site: inventory.Site) -> set[str]:
    return {s.name for s in site.services if s.mode == "http"}


def _service_listeners(site: inventory.Site) -> set[str]:
    return {s.name for s in site.services}


def _sessions(sock: Path, site: inventory.Site) -> Optional[tuple[list[haproxy_api.Stream], int]]:
    """(streams on the service listeners, idle HTTP connections), or None when haproxy cannot be asked."""
    try:
        rows = haproxy_api.stat_rows(sock)
        found = haproxy_api.streams(sock, _service_listeners(site))
    except OSError:
        return None
    http = _http_listeners(site)
    idle = haproxy_api.frontend_connections(rows, http) - sum(1 for s in found if s.frontend in http)
    return found, max(0, idle)


# --------------------------------------------------------------------------- drain / resume


def _check_peers(site: inventory.Site, me: str, held: list[str], force: bool,
                 peer_check: Callable[[inventory.Site, inventory.Node], Optional[bool]], say,
                 bgp: bool = False) -> dict[str, Optional[bool]]:
    """Step 1: refuse (unless --force) when no other node's haproxy answers and this node holds (VRRP) or
    announces (bgp) a VIP. Where the others cannot be asked, VRRP checks after the move (step 5); bgp cannot
    (the VIP stays on this node's own interface, a connect to it never leaves the node), so it refuses."""
    if not held:
        return {}
    others = [n for n in site.nodes if n.name != me]
    peers = {n.name: peer_check(site, n) for n in others}
    healthy = [n for n, ok in peers.items() if ok]
    unknown = [n for n, ok in peers.items() if ok is None]
    verb, then = ("announces", "no node announces it") if bgp else ("holds", "the VIP then has no node")
    if not healthy and not unknown:
        why = (f"this node {verb} {', '.join(held)} and no other node's haproxy answers "
               f"({', '.join(f'{n.name} {n.address}:{site.stats.port}' for n in others) or 'no other node'})")
        if not force:
            raise UserError(f"drain refused: {why}; --force drains anyway ({then})")
        say(f"warning: {why}; draining anyway (--force)")
    elif not healthy and bgp:
        why = (f"this node announces {', '.join(held)} and whether another node's haproxy is healthy cannot be known: "
               f"the stats listener is on {site.stats.bind} (`stats.bind: node` lets drain ask the other nodes)")
        if not force:
            raise UserError(f"drain refused: {why}; --force drains anyway (if no other node announces, nothing serves the VIPs)")
        say(f"warning: {why}; draining anyway (--force)")
    elif not healthy:
        say(f"cannot ask the other nodes' haproxy (stats.bind is {site.stats.bind}); "
            "checking after the move that each VIP answers from another node")
    return peers


def _set_keepalive_flag(sock: Path, say) -> bool:
    """Step 2: keep-alive clients leave on their next response (Connection: close)."""
    try:
        haproxy_api.set_drain_flag(sock, True)
        return True
    except (OSError, RuntimeError) as exc:
        say(f"warning: haproxy's drain flag not set ({layout.shown(layout.HAPROXY_SOCKET)}: {exc}); "
            "keep-alive connections are not closed before the move")
        return False


def _wait_for_streams(sock: Path, site: inventory.Site, held: list[str], t_flag: float, wait: float) -> tuple[list, int, float]:
    """Step 3: let the streams that were open finish, up to --wait. Returns (streams left, idle HTTP, seconds waited)."""
    first = _sessions(sock, site) if held else None
    old = {s.id for s in first[0]} if first else set()
    left = sorted(first[0], key=lambda s: s.id) if first else []
    idle = first[1] if first else 0
    deadline = t_flag + max(0.0, wait)
    while held and first is not None:
        now = _sessions(sock, site)
        if now is None:
            break
        elapsed = time.monotonic() - t_flag
        left = [s for s in now[0] if s.id in old and s.age_s + 1 >= int(elapsed)]
        idle = now[1]
        if (not left and not idle) or time.monotonic() >= deadline:
            break
        time.sleep(POLL)
    return left, idle, round(time.monotonic() - t_flag, 1)


def _move_vips(root: Path, held: list[str], ip_json: Optional[Path]) -> tuple[int, float]:
    """Step 4: the drain file makes keepalived give every VIP up; the VIPs stay local for GRACE so
    packets already on their way are still answered. Returns (ms until the VIPs left, when the file was written)."""
    routes: list[str] = []
    try:
        for vip in held:
            run(["ip", "route", "add", "local", f"{vip}/32", "dev", "lo", "table", "local", "metric", GRACE_METRIC],
                context=f"keeping {vip} local for the drain grace")
            routes.append(vip)
        t_move = time.monotonic()
        _write_flag(root, 1)
        moved_at = time.monotonic()
        while held and _held(held, ip_json):
            if time.monotonic() - t_move > MOVE_TIMEOUT:
                _write_flag(root, 0)
                raise UserError(f"drain failed: keepalived did not give up {', '.join(_held(held, ip_json))} within "
                                f"{MOVE_TIMEOUT:.0f}s (is keepalived running with the drain track_file?); drain undone")
            time.sleep(0.01)
        moved_ms = round((time.monotonic() - t_move) * 1000)
        if held:
            time.sleep(GRACE)
        return moved_ms, moved_at
    finally:
        for vip in routes:
            run(["ip", "route", "del", "local", f"{vip}/32", "dev", "lo", "table", "local", "metric", GRACE_METRIC],
                check=False)


def _undo(root: Path, sock: Path, flag_set: bool) -> None:
    """A refused or failed drain leaves nothing behind: the drain file back to 0, haproxy's flag cleared."""
    _write_flag(root, 0)
    if flag_set:
        try:
            haproxy_api.set_drain_flag(sock, False)
        except (OSError, RuntimeError):
            pass


def _check_orphans(root: Path, site: inventory.Site, held: list[str], force: bool, sock: Path, flag_set: bool,
                   vip_check: Callable[[str, int], bool]) -> list[str]:
    """Step 5: somebody else must answer for every VIP given up, or the drain is undone (unless --force)."""
    port = sorted(site.services, key=lambda s: s.port)[0].port
    orphans = [vip for vip in held if not vip_check(vip, port)]
    if orphans and not force:
        _undo(root, sock, flag_set)
        raise UserError(f"drain refused: no other node answered for {', '.join(orphans)} on port {port} "
                        f"after the move; drain undone (this node takes the VIP back); --force keeps it drained")
    return orphans


def drain(
    root: Path = Path("/"),
    wait: float = DEFAULT_WAIT,
    force: bool = False,
    ip_json: Optional[Path] = None,
    peer_check: Callable[[inventory.Site, inventory.Node], Optional[bool]] = peer_haproxy,
    vip_check: Callable[[str, int], bool] = _tcp_ok,
    log: Callable[[str], None] = lambda line: None,
    vtysh: Optional[Sequence[str]] = None,
) -> Outcome:
    """Drain this node (see the module docstring), in the steps the helpers above name; in mode bgp, drain_bgp().
    peer_check/vip_check are parameters so unit tests on a --root tree can answer for nodes that do not exist
    there; the lab uses the real ones. vtysh: FRR's command (mode bgp; default `vtysh -N <pathspace>`)."""
    root = Path(root)
    site = _site(root)
    state = _applied_state(root)
    if site.mode == inventory.Mode.BGP:
        return drain_bgp(root, site, state.node, vtysh=vtysh, wait=wait, force=force, peer_check=peer_check, log=log)
    sock = root / layout.HAPROXY_SOCKET
    out, say = _outcome(log)
    if read_flag(root):
        return _already(root, out, say)

    held = _held(list(state.vips), ip_json)
    peers = _check_peers(site, state.node, held, force, peer_check, say)
    t_flag = time.monotonic()
    flag_set = _set_keepalive_flag(sock, say)
    left, idle, waited = _wait_for_streams(sock, site, held, t_flag, wait)
    moved_ms, moved_at = _move_vips(root, held, ip_json)
    orphans = _check_orphans(root, site, held, force, sock, flag_set, vip_check)

    info = {
        "since": _now(),
        "node": state.node,
        "gave_up": held,
        "waited_s": waited,
        "wait_s": wait,
        "streams_left_at_move": len(left),
        "idle_http_at_move": idle,
        "vip_left_ms": moved_ms if held else None,
        # CLOCK_MONOTONIC when the drain file was written (one clock for every namespace of a host)
        "moved_monotonic": round(moved_at, 4),
        "grace_s": GRACE if held else 0,
        "forced": force,
        "orphaned": orphans,
        "peers_haproxy": peers,
        "haproxy_flag": flag_set,
    }
    _write_info(root, info)
    out.info = info
    if held:
        say(f"drained: gave up {', '.join(held)} in {moved_ms} ms (every VRRP instance in FAULT); "
            f"waited {waited}s for streams, {len(left)} left at the move (reset by it)")
    else:
        say("drained: this node held no VIP; every VRRP instance in FAULT (it takes none over)")
    if orphans:
        say(f"warning: nothing answers for {', '.join(orphans)} (--force)")
    say(f"state kept in {layout.shown(layout.DRAIN_FILE)} (survives a reboot); `ha-ingress-proxy resume` undoes it")
    return out


def _outcome(log: Callable[[str], None]):
    out = Outcome(ok=True)
    return out, lambda line: (out.lines.append(line), log(line))


def _already(root: Path, out: Outcome, say) -> Outcome:
    info = read_info(root) or {}
    say(f"already drained{' since ' + info['since'] if info.get('since') else ''}; `ha-ingress-proxy resume` undoes it")
    out.info = info
    return out


def _clear(root: Path, say) -> int:
    """resume's common step: the drain file back to 0, haproxy's flag cleared, drain.json gone. Returns the old value."""
    was = read_flag(root)
    if was:
        _write_flag(root, 0)
    try:
        haproxy_api.set_drain_flag(root / layout.HAPROXY_SOCKET, False)
    except (OSError, RuntimeError) as exc:
        if was:
            say(f"warning: haproxy's drain flag not cleared ({layout.shown(layout.HAPROXY_SOCKET)}: {exc}); "
                "haproxy starts with it cleared")
    files.remove(root, layout.DRAIN_INFO)
    if not was:
        say("not drained; nothing to resume")
    return was


def resume(root: Path = Path("/"), log: Callable[[str], None] = lambda line: None,
           vtysh: Optional[Sequence[str]] = None) -> Outcome:
    """Undo drain: the drain file back to 0 (keepalived leaves FAULT; in mode bgp resume_bgp()), haproxy's flag cleared."""
    root = Path(root)
    site = None
    try:
        site = _site(root)
    except UserError:
        pass
    if site is not None and site.mode == inventory.Mode.BGP:
        return resume_bgp(root, site, _applied_state(root).node, vtysh=vtysh, log=log)
    out, say = _outcome(log)
    if not _clear(root, say):
        return out
    if site is not None and site.vrrp.preempt:
        say("resumed: keepalived leaves FAULT; with preempt this node takes back the VIPs it masters")
    else:
        say("resumed: keepalived leaves FAULT as BACKUP; the VIPs stay where they are (nopreempt) "
            "until their holder fails or is drained")
    return out


# --------------------------------------------------------------------------- mode bgp
#
# Every node holds every VIP on hip0 all the time; what takes a node out is its routers' ECMP set, driven by
# what it announces. The bgp-gate announces only while haproxy answers and the drain file is 0; drain_bgp
# sets the file and watches FRR until nothing is advertised any more. There is no VIP move to wait for
# and no grace route: packets the router already sent here still find the VIP here.


def _frr_now(vtysh: Sequence[str], view: BgpView) -> frr.Frr:
    return frr.observe(vtysh, [p.address for p in view.peers])


def _withdraw(root: Path, vtysh: Sequence[str], view: BgpView, timeout: float) -> tuple[int, float, bool]:
    """Step 4 (bgp): the drain file makes the gate withdraw (within gate_fall checks); wait until FRR advertises
    no VIP to any peer. Returns (ms until then, when the file was written, whether FRR still answered)."""
    t_write = time.monotonic()
    _write_flag(root, 1)
    while True:
        now = _frr_now(vtysh, view)
        still = now.advertising(view.vips) if now.running else {}
        if not still:
            return round((time.monotonic() - t_write) * 1000), t_write, now.running
        if time.monotonic() - t_write > timeout:
            shown = "; ".join(f"{', '.join(v)} to {p}" for p, v in sorted(still.items()))
            raise UserError(f"drain failed: FRR still advertises {shown} {timeout:g}s after the drain file was set "
                            "(is ha-ingress-proxy-bgp-gate.service running? it withdraws while the file is non-zero); "
                            "drain undone")
        time.sleep(POLL / 2)


def drain_bgp(
    root: Path,
    site: inventory.Site,
    node: str,
    vtysh: Optional[Sequence[str]] = None,
    wait: float = DEFAULT_WAIT,
    force: bool = False,
    peer_check: Callable[[inventory.Site, inventory.Node], Optional[bool]] = peer_haproxy,
    log: Callable[[str], None] = lambda line: None,
    timeout: float = WITHDRAW_TIMEOUT,
) -> Outcome:
    """Drain a mode-bgp node: refuse if no other node's haproxy is known healthy (step 1), haproxy's keep-alive
    flag (2), wait for streams (3), withdraw and confirm from FRR (4). root holds the drain file, drain.json and
    haproxy's admin socket (layout paths below it); vtysh defaults to `vtysh -N <pathspace>`. The lab and the
    bench call this directly with their own root and vtysh. Outcome.info is what drain.json records."""
    root = Path(root)
    view = plan(site, node).bgp
    assert view is not None, f"site {site.site} is not mode bgp"
    vtysh = list(vtysh or frr.vtysh_argv(view.pathspace))
    sock = root / layout.HAPROXY_SOCKET
    out, say = _outcome(log)
    if read_flag(root):
        return _already(root, out, say)

    before = _frr_now(vtysh, view)
    if not before.running:
        say(f"{before.error}: this node announces nothing now")
    announced = [v.split("/")[0] for v in before.announced(view.vips)]
    peers = _check_peers(site, node, announced, force, peer_check, say, bgp=True)
    t_flag = time.monotonic()
    flag_set = _set_keepalive_flag(sock, say)
    left, idle, waited = _wait_for_streams(sock, site, announced, t_flag, wait)
    at_withdraw = _sessions(sock, site) if announced else None  # every flow still here is rehashed by the withdraw
    try:
        withdrawn_ms, t_write, frr_up = _withdraw(root, vtysh, view, timeout)
    except UserError:
        _undo(root, sock, flag_set)
        raise

    streams = len(at_withdraw[0]) if at_withdraw else 0
    idle = at_withdraw[1] if at_withdraw else 0
    info = {
        "since": _now(),
        "node": node,
        "mode": "bgp",
        "withdrew": announced,
        "gave_up": announced,
        "waited_s": waited,
        "wait_s": wait,
        # every service stream open when the drain file was written: its next packet is hashed to another
        # node, which resets it (the ones that were open before the wait, and the ones that came during it)
        "streams_left_at_move": streams,
        "streams_from_before_wait": len(left),
        "idle_http_at_move": idle,
        "withdrawn_ms": withdrawn_ms if announced else None,
        "moved_monotonic": round(t_write, 4),
        "forced": force,
        "peers_haproxy": peers,
        "haproxy_flag": flag_set,
        "frr_running": frr_up,
    }
    _write_info(root, info)
    out.info = info
    to = ", ".join(p.address for p in before.peers if p.established) or "no peer"
    if announced:
        say(f"drained: withdrew {', '.join(announced)} from {to} in {withdrawn_ms} ms; waited {waited}s for streams, "
            f"{streams} stream(s) and {idle} idle HTTP connection(s) left at the withdraw (the routers rehash them to "
            "another node, which resets them)")
    else:
        say("drained: this node announced no VIP; the bgp-gate will not announce until resume")
    say(f"state kept in {layout.shown(layout.DRAIN_FILE)} (survives a reboot); `ha-ingress-proxy resume` undoes it")
    return out


def resume_bgp(
    root: Path,
    site: inventory.Site,
    node: str,
    vtysh: Optional[Sequence[str]] = None,
    log: Callable[[str], None] = lambda line: None,
    timeout: float = ANNOUNCE_TIMEOUT,
) -> Outcome:
    """Undo drain_bgp: clear the drain file, then wait until FRR advertises every VIP to every Established peer
    again (the gate announces after gate_rise healthy checks). UserError when that does not happen in time."""
    root = Path(root)
    view = plan(site, node).bgp
    assert view is not None, f"site {site.site} is not mode bgp"
    vtysh = list(vtysh or frr.vtysh_argv(view.pathspace))
    out, say = _outcome(log)
    t0 = time.monotonic()
    if not _clear(root, say):
        return out
    vips = [v.split("/")[0] for v in view.vips]
    while True:
        now = _frr_now(vtysh, view)
        up = [p for p in now.peers if p.established]
        if up and all(set(view.vips) <= set(p.advertised) for p in up):
            ms = round((time.monotonic() - t0) * 1000)
            say(f"resumed: announcing {', '.join(vips)} to {', '.join(p.address for p in up)} again ({ms} ms)")
            return out
        if time.monotonic() - t0 > timeout:
            why = (now.error if not now.running else "no BGP session is Established" if not up else
                   "the bgp-gate announces only while haproxy answers: is haproxy up, is ha-ingress-proxy-bgp-gate.service running?")
            raise UserError(f"resumed (the drain file is 0), but {', '.join(vips)} not announced after {timeout:g}s: {why}")
        time.sleep(POLL)
