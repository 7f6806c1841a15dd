"""What this node is doing right now: the one source both `status` and `metrics` read.

Everything is read at the moment it is asked, from facts that cannot go stale:

- which VIPs are held: the addresses on this host's interfaces now (`ip -j -4
  addr`): what the kernel answers ARP for is what clients reach;
- keepalived alive: its pid file names a live process whose /proc/<pid>/comm is
  `keepalived` (and, when keepalived wrote /run/vrrp.pid, its VRRP child too);
- haproxy alive: the same rule keepalived's own check script applies to
  /run/haproxy.pid (the master of `haproxy -Ws` exits when its worker dies);
- the role: the agent's state file of this boot (/run is a tmpfs).

Nothing here is written on a VRRP transition (no notify-script state file that
"says MASTER forever" after keepalived died) and keepalived is not signalled
(a SIGJSON/SIGUSR1 dump per scrape would make the daemon write files on every
call, and the dump is only as fresh as the signal that asked for it).

VRRP state per VIP, derived in this order:
  down    keepalived is not running (even if the address is still on the
          interface: vip_held says so separately; a dead keepalived never
          reports master);
  master  keepalived runs and the VIP is on this host's interface;
  fault   keepalived runs, the VIP is not here and haproxy is down (the
          unweighted haproxy check puts every instance in FAULT) or the node
          is drained (`ha-ingress-proxy drain`: the drain track file does), or
          watch-haproxy's track file says 1 (haproxy's master gone);
  backup  keepalived runs, the VIP is elsewhere, haproxy runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ha_ingress_proxy import layout
from ha_ingress_proxy.errors import UserError

from . import drain, files, sources
from .state import State, StateError
from .state import read as _read_state

STATES = ("master", "backup", "fault", "down")


@dataclass
class Vip:
    address: str
    instance: str  # keepalived's vrrp_instance name (VI_<router_id>), "" if unknown
    held: Optional[bool]  # None: this host's addresses could not be read
    state: Optional[str]  # one of STATES; None when held is unknown and keepalived runs
    planned_master: bool  # this node masters it when every node is healthy


@dataclass
class Observation:
    state: Optional[State]  # the agent's state of this boot; None when there is none or it is unusable
    keepalived_pid: Optional[int]
    haproxy_pid: Optional[int]
    addresses: Optional[list[tuple[str, str]]]  # None when they could not be read
    addresses_error: str = ""
    state_error: str = ""  # the StateError line when the state file is there but unusable
    drained: bool = False  # `ha-ingress-proxy drain`: keepalived holds every instance in FAULT
    drain_info: Optional[dict] = None
    # `watch-haproxy`'s track_file (keepalived: every instance in FAULT while non-zero); None: absent
    haproxy_down: Optional[int] = None
    vips: list[Vip] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return bool(self.state is not None and self.state.ok)

    @property
    def keepalived_up(self) -> bool:
        return self.keepalived_pid is not None

    @property
    def haproxy_up(self) -> bool:
        return self.haproxy_pid is not None


def live_pid(root: Path, pidfile: str, comm: str) -> Optional[int]:
    """The pid a pid file names when <root>/proc says that process is `comm` and not a zombie, else None.

    Read with files.read_limited: regular files only, so a FIFO in a pid file's place cannot block a scrape.
    """
    root = Path(root)
    try:
        pid = int(files.read_limited(root, pidfile, 64).split()[0])
        name = files.read_limited(root, f"proc/{pid}/comm", 64).decode("utf-8", "replace").strip()
    except (OSError, ValueError, IndexError, UserError):
        return None
    if name != comm:
        return None
    try:
        stat = files.read_limited(root, f"proc/{pid}/stat", 4096).decode("utf-8", "replace")
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return None
    except FileNotFoundError:
        pass  # a <root>/proc without stat (tests): comm is the check
    except (OSError, ValueError, IndexError, UserError):
        return None
    return pid


def keepalived_pid(root: Path) -> Optional[int]:
    """keepalived's pid when its pid file names a live keepalived and its VRRP child (if it wrote one) lives."""
    pid = live_pid(root, layout.KEEPALIVED_PIDFILE, "keepalived")
    if pid is None:
        return None
    if files.exists(Path(root), layout.VRRP_PIDFILE) and live_pid(root, layout.VRRP_PIDFILE, "keepalived") is None:
        # the parent respawns a dead VRRP child within a second; until then nothing sends adverts
        return None
    return pid


def haproxy_pid(root: Path) -> Optional[int]:
    return live_pid(root, layout.HAPROXY_PIDFILE, "haproxy")


def _instances(root: Path) -> dict[str, str]:
    """VIP -> keepalived instance name, from the site model the node carries (VI_<router_id>, as plan.py names them)."""
    try:
        site = json.loads(files.read_limited(Path(root), layout.SITE_MODEL, 1 << 20))
        return {str(v["address"]): f"VI_{int(v['router_id'])}" for v in site.get("vips") or [] if v.get("router_id")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UserError):
        return {}


def vrrp_state(keepalived_up: bool, held: Optional[bool], haproxy_up: bool, tracked_fault: bool = False) -> Optional[str]:
    """tracked_fault: a track_file holds every instance in FAULT (drain's, or watch-haproxy's haproxy-down)."""
    if not keepalived_up:
        return "down"
    if held is None:
        return None
    if held:
        return "master"
    return "backup" if haproxy_up and not tracked_fault else "fault"


def observe(root: Path = Path("/"), ip_json: Optional[Path] = None,
            addresses: Optional[list[tuple[str, str]]] = None) -> Observation:
    """Read every fact now. Never raises for what it cannot read: the Observation says what is unknown."""
    root = Path(root)
    state_error = ""
    try:
        state = _read_state(root)
    except StateError as exc:
        state, state_error = None, " ".join(exc.lines)
    error = ""
    if addresses is None:
        try:
            addresses = sources.host_addresses(ip_json)
        except Exception as exc:  # noqa: BLE001 - observing reports, it does not fail
            addresses = None
            error = " ".join(str(exc).split())
    obs = Observation(state, keepalived_pid(root), haproxy_pid(root), addresses, error, state_error)
    obs.drained = drain.read_flag(root) != 0
    obs.drain_info = drain.read_info(root) if obs.drained else None
    obs.haproxy_down = files.track_file_value(root, layout.HAPROXY_DOWN)
    if state is None or not obs.applied:
        return obs
    held_here = None if addresses is None else {a for _, a in addresses}
    names = _instances(root)
    masters = set(state.masters)
    for vip in state.vips:
        held = None if held_here is None else vip in held_here
        tracked_fault = obs.drained or bool(obs.haproxy_down)
        obs.vips.append(Vip(vip, names.get(vip, ""), held,
                            vrrp_state(obs.keepalived_up, held, obs.haproxy_up, tracked_fault),
                            vip in masters))
    return obs


__all__ = ["Observation", "Vip", "STATES", "observe", "keepalived_pid", "haproxy_pid", "vrrp_state"]
