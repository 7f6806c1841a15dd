"""Hitless reloads: a changed config reaches haproxy and keepalived by a validated reload, never a restart.

haproxy runs master-worker (`-Ws`, the distro units' default). A reload is
`haproxy -c` on the new config, then the servers' runtime state saved to the
server-state-file (`show servers state`), then SIGUSR2 to the master: the new
worker takes the listening sockets over from the old one (`expose-fd
listeners` on the stats socket), loads the saved state (a drained or disabled
server stays so), and the old worker keeps its established connections until
they end or `hard-stop-after` (30m) stops it. On a systemd host this is
`systemctl reload haproxy` (the drop-in's ExecReload= does the same three
steps); elsewhere (the lab, a container) the agent does them itself.

keepalived reloads on SIGHUP (`systemctl reload keepalived`): it re-reads its
config and keeps every instance's state, so a VIP does not move when the VIP
set is unchanged.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Optional

from ha_ingress_proxy import layout
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.subproc import require_tool, run

from . import files, haproxy_api, secrets


def _pid(root: Path, pidfile: str, comm: str) -> Optional[int]:
    """The pid in <root>/<pidfile> when it names a live process called comm (seen through <root>/proc)."""
    try:
        pid = int((root / pidfile).read_text().split()[0])
        name = (root / "proc" / str(pid) / "comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if name == comm else None


def haproxy_pid(root: Path) -> Optional[int]:
    """haproxy's master (the pid file of -Ws mode), when it runs."""
    return _pid(root, layout.HAPROXY_PIDFILE, "haproxy")


def keepalived_pid(root: Path) -> Optional[int]:
    return _pid(root, layout.KEEPALIVED_PIDFILE, "keepalived")


def _systemd(root: Path) -> bool:
    return Path(root) == Path("/") and Path("/run/systemd/system").is_dir()


def save_server_state(root: Path = Path("/")) -> int:
    """Write `show servers state` to the server-state-file; returns the number of server lines."""
    root = Path(root)
    try:
        text = haproxy_api.servers_state(root / layout.HAPROXY_SOCKET)
    except OSError as exc:
        raise UserError(f"{layout.shown(layout.HAPROXY_SOCKET)}: {exc.strerror or exc}: server state not saved") from None
    if not text.lstrip().startswith("1"):  # the file format's version line
        raise UserError(f"haproxy answered `show servers state` with {' '.join(text.split())[:80]!r}: server state not saved")
    files.write_atomic(root, layout.SERVER_STATE, text.encode(), layout.mode(layout.SERVER_STATE))
    return sum(1 for line in text.splitlines()[1:] if line.strip() and not line.startswith("#"))


def check_haproxy(root: Path = Path("/")) -> None:
    """`haproxy -c` on the config at <root>; UserError (haproxy's own words) when it is not valid."""
    haproxy = require_tool("haproxy", "haproxy")
    password = secrets.from_secrets_env(root)
    env = {"HAPROXY_STATS_PASSWORD": password.value if password else ""}
    proc = run([haproxy, "-c", "-q", "-f", str(Path(root) / layout.HAPROXY_CFG)], env=env, check=False)
    if proc.returncode != 0:
        raise UserError(f"{layout.shown(layout.HAPROXY_CFG)}: haproxy -c refused it; haproxy not reloaded",
                        *(f"  {line}" for line in (proc.stdout or "").strip().splitlines()[-5:]))


def reload_haproxy(root: Path = Path("/")) -> str:
    """Validate, save server state, SIGUSR2 the master. Returns what was done; UserError if haproxy is not running."""
    root = Path(root)
    if _systemd(root):
        check_haproxy(root)  # (ExecReload checks again; this gives the clearer message)
        run(["systemctl", "reload", "haproxy.service"], context="reloading haproxy")
        return "haproxy reloaded (systemctl reload: validated, server state saved, SIGUSR2 to the master)"
    pid = haproxy_pid(root)
    if pid is None:
        raise UserError(f"haproxy is not running ({layout.shown(layout.HAPROXY_PIDFILE)} names no live haproxy): nothing to reload")
    check_haproxy(root)
    try:
        servers = f"{save_server_state(root)} servers' state saved"
    except UserError as exc:
        servers = f"warning: {exc.lines[0]}"
    os.kill(pid, signal.SIGUSR2)
    return f"haproxy reloaded (validated; {servers}; SIGUSR2 to master {pid})"


def reload_keepalived(root: Path = Path("/")) -> str:
    root = Path(root)
    if _systemd(root):
        run(["systemctl", "reload", "keepalived.service"], context="reloading keepalived")
        return "keepalived reloaded (systemctl reload: SIGHUP)"
    pid = keepalived_pid(root)
    if pid is None:
        raise UserError(f"keepalived is not running ({layout.shown(layout.KEEPALIVED_PIDFILE)} names no live keepalived): nothing to reload")
    os.kill(pid, signal.SIGHUP)
    return f"keepalived reloaded (SIGHUP to {pid}; instances keep their state)"


def reload_changed(root: Path, changed: set[str]) -> list[str]:
    """After apply: reload each running daemon whose config file (layout path) was rewritten."""
    root = Path(root)
    done = []
    if layout.HAPROXY_CFG in changed and (haproxy_pid(root) is not None or _systemd(root) and _active("haproxy.service")):
        done.append(reload_haproxy(root))
    if layout.KEEPALIVED_CONF in changed and (keepalived_pid(root) is not None or _systemd(root) and _active("keepalived.service")):
        done.append(reload_keepalived(root))
    return done


def _active(unit: str) -> bool:
    return run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0
