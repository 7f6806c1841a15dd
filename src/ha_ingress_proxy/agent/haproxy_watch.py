"""`watch-haproxy`: haproxy's death noticed when it happens, for keepalived (a track_file).

keepalived's polling check (chk_haproxy, every second) leaves a dead haproxy holding
the VIPs for up to a second. This watcher holds a pidfd (pidfd_open(2), Linux 5.3) on
haproxy's master, the pid in haproxy's pid file (master-worker, -Ws), and blocks in
poll(2) on it. The master exits when haproxy dies (SIGKILL, a crash, `systemctl stop`;
when a worker dies the master stops the others and exits too), and the pidfd becomes
readable at that moment: the watcher writes 1 to /run/ha-ingress-proxy/haproxy-down.
keepalived watches that file with inotify (track_file, weight 0): every VRRP instance
goes to FAULT at once and a master gives its VIPs up with a priority-0 advert, so a
backup takes over within one advert interval.

- A reload (SIGUSR2: the master re-executes itself, same process, same PID) is not an
  exit: the pidfd stays quiet and nothing is written.
- After a death the watcher reads the pid file every POLL seconds until it names a new
  live master that has forked its worker (systemd's Restart=, `systemctl restart`),
  then writes 0 and watches that one. Until then the file says 1, so a half-started
  haproxy (master up, no worker yet) does not take a VIP back. A planned restart is a
  stop and a start: it moves the VIPs (nothing listens in between); reload instead.
- A stale pid file (the dead master's PID, a zombie, or the PID reused by another
  program) never counts: the process must be alive and called haproxy.
- SIGTERM (the unit stopping): it writes 0 and exits 0, handing the decision back to
  the polling check, which stays as the backstop; absent or 0 means serving.
- Where pidfd_open is refused (seccomp, an old kernel) it checks the master every
  FALLBACK_POLL seconds instead.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from ha_ingress_proxy import layout

POLL = 0.1  # seconds between pid file reads while haproxy is down (its restart takes a second anyway)
FALLBACK_POLL = 0.02  # seconds between checks of the master when pidfd_open is not available
DOWN, SERVING = 1, 0


class _Stop(Exception):
    """SIGTERM/SIGINT: leave the loop (raised from the signal handler, so a blocking poll ends)."""


def _stat(root: Path, pid: int) -> Optional[tuple[str, str]]:
    """(comm, state letter) of a process, seen through <root>/proc; None when it is gone."""
    try:
        text = (root / "proc" / str(pid) / "stat").read_text()
    except OSError:
        return None
    head, _, tail = text.rpartition(")")
    comm = head.split("(", 1)[1] if "(" in head else ""
    fields = tail.split()
    return (comm, fields[0]) if fields else None


def _alive_haproxy(root: Path, pid: int) -> bool:
    st = _stat(root, pid)
    return st is not None and st[0] == "haproxy" and st[1] not in ("Z", "X", "x")


def master(root: Path) -> Optional[int]:
    """haproxy's master: the pid in its pid file, when that process is alive and called haproxy."""
    try:
        pid = int((root / layout.HAPROXY_PIDFILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 1 and _alive_haproxy(root, pid) else None


def has_worker(root: Path, pid: int) -> bool:
    """The master has forked a live haproxy worker (it serves). True when the kernel cannot tell
    (no /proc/<pid>/task/<pid>/children): then the master's life alone counts, as in the check."""
    try:
        kids = (root / "proc" / str(pid) / "task" / str(pid) / "children").read_text().split()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return any(_alive_haproxy(root, int(k)) for k in kids if k.isdigit())


def serving(root: Path) -> Optional[int]:
    """The master's pid when haproxy serves (a live master with a live worker), else None."""
    pid = master(root)
    return pid if pid is not None and has_worker(root, pid) else None


def _pidfd(pid: int) -> Optional[int]:
    """A pidfd for pid; None when the system does not offer pidfd_open. ProcessLookupError when pid is gone."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise ProcessLookupError(pid) from None
        if exc.errno in (errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EINVAL):
            return None
        raise


def wait_exit(root: Path, pid: int, fd: Optional[int]) -> None:
    """Return when process pid has exited: poll(2) on its pidfd, or a check every FALLBACK_POLL seconds."""
    if fd is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll():
            pass
        return
    while _alive_haproxy(root, pid):
        time.sleep(FALLBACK_POLL)


class Watcher:
    """The flag file and what was last written to it (writes only on a change, logs every change)."""

    def __init__(self, root: Path, log: Callable[[str], None]) -> None:
        self.root = Path(root)
        self.log = log
        self.value: Optional[int] = None

    def set(self, value: int, why: str) -> None:
        if value == self.value:
            return
        from . import files

        files.write_atomic(self.root, layout.HAPROXY_DOWN, f"{value}\n".encode(), 0o644)
        self.value = value
        self.log(f"watch-haproxy: {why}: {layout.shown(layout.HAPROXY_DOWN)} = {value}")

    def step(self) -> None:
        """One round: wait for a serving master (flag 1 meanwhile), then hold it until it exits (flag 1)."""
        pid = serving(self.root)
        if pid is None:
            self.set(DOWN, "no haproxy master with a worker")
            time.sleep(POLL)
            return
        try:
            fd = _pidfd(pid)
        except ProcessLookupError:
            return
        try:
            if serving(self.root) != pid:  # gone or replaced between the read and the open: read again
                return
            self.set(SERVING, f"haproxy master {pid} serves")
            wait_exit(self.root, pid, fd)
            self.set(DOWN, f"haproxy master {pid} exited")
        finally:
            if fd is not None:
                os.close(fd)


def main(root: Path = Path("/"), log: Callable[[str], None] = print) -> int:
    """Run until SIGTERM/SIGINT, then write 0 and return 0. Exit 0 at once when the site does not use it."""
    from .apply import load_site

    root = Path(root)
    site = load_site(root)
    if not (site.mode.vrrp and site.vrrp.haproxy_watch):
        log("watch-haproxy: not used by this site (vrrp.haproxy_watch is false or mode bgp); exiting")
        return 0

    def stop(signum, frame):  # noqa: ARG001
        raise _Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watcher = Watcher(root, lambda line: (log(line), sys.stdout.flush()))
    try:
        while True:
            watcher.step()
    except _Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        watcher.value = None
        watcher.set(SERVING, "stopping; keepalived's check decides meanwhile")
    return 0
