"""haproxy's runtime API on its stats socket, with a plain unix socket (no socat, no subprocess).

What the agent asks: `show stat` (servers and frontends), `show sess` (streams:
client connections with a request or a TCP stream in flight), `show servers
state` (saved before a reload, for server-state-file), and `set server` on the
drain flag (plan.DRAIN_BACKEND). The socket is `level admin` (haproxy.cfg).

An idle HTTP keep-alive connection has no stream in haproxy 2.x (the mux holds
it between requests), so `show sess` does not list it; the frontend's `scur`
in `show stat` counts it (one per client connection).
"""

from __future__ import annotations

import csv
import io
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from ha_ingress_proxy.plan import DRAIN_BACKEND

SOCKET_TIMEOUT = 2.0
DRAIN_SERVER = "on"  # the flag backend's one server (haproxy.cfg.j2)
EXCLUDED_PROXIES = ("stats", DRAIN_BACKEND)


def command(sock_path: Path, line: str, timeout: float = SOCKET_TIMEOUT) -> str:
    """Send one command, return haproxy's whole answer. OSError if the socket is unreachable."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def stat_rows(sock_path: Path, timeout: float = SOCKET_TIMEOUT) -> list[dict[str, str]]:
    """`show stat` as CSV rows (pxname, svname, scur, status, ...)."""
    text = command(sock_path, "show stat", timeout)
    if text.startswith("# "):
        text = text[2:]
    return [row for row in csv.DictReader(io.StringIO(text)) if row.get("pxname")]


def servers(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """listener -> server -> status (UP, DOWN, MAINT, ...), without the stats listener and the drain flag."""
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        px, sv = row.get("pxname"), row.get("svname")
        if not px or not sv or sv in ("FRONTEND", "BACKEND") or px in EXCLUDED_PROXIES:
            continue
        out.setdefault(px, {})[sv] = row.get("status") or "?"
    return out


def drain_flag(rows: list[dict[str, str]]) -> bool | None:
    """True when the drain flag is set (its server not in maintenance), None when the config has none."""
    for row in rows:
        if row.get("pxname") == DRAIN_BACKEND and row.get("svname") == DRAIN_SERVER:
            return not (row.get("status") or "").startswith("MAINT")
    return None


def frontend_connections(rows: list[dict[str, str]], names: set[str]) -> int:
    """Client connections open now on the named listeners (FRONTEND scur), idle keep-alive ones included."""
    total = 0
    for row in rows:
        if row.get("svname") == "FRONTEND" and row.get("pxname") in names:
            try:
                total += int(row.get("scur") or 0)
            except ValueError:
                pass
    return total


@dataclass(frozen=True)
class Stream:
    id: str  # haproxy's pointer, e.g. 0x55d0c1a2b400 (may be reused by a later stream)
    frontend: str
    source: str
    age_s: int


_SESS = re.compile(r"^(0x[0-9a-fA-F]+): proto=\S+ src=(\S+) fe=(\S+) .*?\bage=(\S+)")
_AGE = re.compile(r"(\d+)([dhms])")
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _age(text: str) -> int:
    """haproxy's human time (`5s`, `1m20s`, `2h3m`, `1d2h`) in seconds; `<NOW>` and the like are 0."""
    return sum(int(n) * _UNIT[u] for n, u in _AGE.findall(text))


def streams(sock_path: Path, names: set[str], timeout: float = SOCKET_TIMEOUT) -> list[Stream]:
    """`show sess`, only streams of the named listeners (not the CLI's own, fe=GLOBAL)."""
    out = []
    for line in command(sock_path, "show sess", timeout).splitlines():
        m = _SESS.match(line.strip())
        if m and m.group(3) in names:
            out.append(Stream(m.group(1), m.group(3), m.group(2), _age(m.group(4))))
    return out


def set_drain_flag(sock_path: Path, on: bool, timeout: float = SOCKET_TIMEOUT) -> None:
    """Set (drain) or clear (resume) the flag. OSError if unreachable, RuntimeError if haproxy refuses."""
    state = "ready" if on else "maint"
    answer = command(sock_path, f"set server {DRAIN_BACKEND}/{DRAIN_SERVER} state {state}", timeout).strip()
    if answer:  # haproxy answers nothing on success
        raise RuntimeError(" ".join(answer.split()))


def servers_state(sock_path: Path, timeout: float = SOCKET_TIMEOUT) -> str:
    """`show servers state`: the text haproxy's server-state-file holds."""
    return command(sock_path, "show servers state", timeout)
