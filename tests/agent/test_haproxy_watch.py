"""`ha-ingress-proxy watch-haproxy` against a real haproxy (-Ws, master-worker) on a --root tree.

The root holds the rendered node tree (the site model says whether the site uses the
watcher), /proc is the real one (a symbolic link: the watcher reads /proc/<pid> below its
root) and /run/haproxy.pid is written by the real haproxy, which listens on a unix socket
only. What the watcher writes is read back from <root>/run/ha-ingress-proxy/haproxy-down.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ha_ingress_proxy import inventory, layout, render
from ha_ingress_proxy.agent import haproxy_watch
from ha_ingress_proxy.subproc import start

from ..conftest import EXAMPLES, ROOT, need_root_and


@pytest.fixture
def root(tmp_path) -> Path:
    need_root_and("haproxy")
    return make_root(tmp_path / "root", inventory.load(EXAMPLES / "active-passive.yaml"))


def make_root(path: Path, site: inventory.Site) -> Path:
    path.mkdir(parents=True)
    render.write_tree(render.render_node(site, site.nodes[0].name), path)
    (path / "proc").symlink_to("/proc")
    (path / "run").mkdir(exist_ok=True)
    return path


class Haproxy:
    """A real haproxy -Ws writing <root>/run/haproxy.pid; stopped by PID."""

    def __init__(self, root: Path, tmp: Path) -> None:
        cfg = tmp / "h.cfg"
        cfg.write_text("global\n    maxconn 64\n\ndefaults\n    mode http\n    timeout connect 1s\n"
                       "    timeout client 5s\n    timeout server 5s\n\n"
                       f"frontend f\n    bind unix@{tmp}/h.sock\n    http-request return status 200\n")
        self.proc = start(["haproxy", "-Ws", "-f", str(cfg), "-p", str(root / layout.HAPROXY_PIDFILE)])
        self.root = root

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def reloadable(self) -> bool:
        """The master catches SIGUSR2 (it installs the handler once it runs its loop; a reload
        signalled before that is lost, haproxy's behaviour, not the watcher's)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return False
        caught = int(status.split("SigCgt:")[1].split()[0], 16)
        return bool(caught & (1 << (signal.SIGUSR2 - 1)))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait(timeout=5)


def _until(cond, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout}s: {what}"
        time.sleep(0.02)


def flag(root: Path) -> str:
    try:
        return (root / layout.HAPROXY_DOWN).read_text()
    except FileNotFoundError:
        return ""


def watcher(root: Path, log: Path):
    with open(log, "ab") as fh:
        return start([sys.executable, "-m", "ha_ingress_proxy.cli", "watch-haproxy", "--root", str(root)],
                     env={"PYTHONPATH": str(ROOT / "src")}, stdout=fh, stderr=fh)


def test_follows_the_master_ignores_reloads_and_reports_a_death(root, tmp_path):
    log = tmp_path / "watch.log"
    w = watcher(root, log)
    procs: list[Haproxy] = []
    try:
        _until(lambda: flag(root) == "1\n", what="no haproxy yet: 1")
        h = Haproxy(root, tmp_path)
        procs.append(h)
        _until(lambda: flag(root) == "0\n", what="a master with a worker: 0")
        for _ in range(3):  # reloads: same master, new worker; the watcher never trips
            _until(h.reloadable, what="haproxy's master catches SIGUSR2")
            before = set(h.workers())
            os.kill(h.pid, signal.SIGUSR2)
            _until(lambda: set(h.workers()) - before, what="a new worker after SIGUSR2")
        time.sleep(0.3)
        assert flag(root) == "0\n"
        assert "exited" not in log.read_text()
        # a worker killed: the master stops and exits (exit-on-failure), and the watcher says so
        os.kill(h.workers()[-1], signal.SIGKILL)
        _until(lambda: flag(root) == "1\n", what="1 after the worker's death took the master down")
        h.proc.wait(timeout=10)
        _until(lambda: f"haproxy master {h.pid} exited" in log.read_text(), what="the watcher's log line")
        # the restart: a new master is followed
        h2 = Haproxy(root, tmp_path)
        procs.append(h2)
        _until(lambda: f"haproxy master {h2.pid} serves" in log.read_text() and flag(root) == "0\n",
               what="0 for the new master")
        # SIGKILL of the master itself
        h2.proc.send_signal(signal.SIGKILL)
        _until(lambda: flag(root) == "1\n", what="1 after SIGKILL of the master")
        h2.proc.wait(timeout=10)
        time.sleep(0.3)
        assert flag(root) == "1\n"  # the stale pid file does not bring it back
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=10) == 0
        assert flag(root) == "0\n"  # stopping hands over to keepalived's check
    finally:
        for h in procs:
            h.stop()
        if w.poll() is None:
            w.kill()
            w.wait(timeout=5)


def test_a_pid_file_naming_another_program_is_not_haproxy(root):
    (root / layout.HAPROXY_PIDFILE).write_text(f"{os.getpid()}\n")  # alive, but python, not haproxy
    assert haproxy_watch.master(root) is None and haproxy_watch.serving(root) is None
    w = haproxy_watch.Watcher(root, log=lambda line: None)
    w.step()
    assert flag(root) == "1\n"


def test_without_pidfd_the_exit_is_still_seen(root, tmp_path):
    """The fallback (pidfd_open refused by a seccomp filter or an old kernel): a check every FALLBACK_POLL."""
    h = Haproxy(root, tmp_path)
    try:
        _until(lambda: haproxy_watch.serving(root) == h.pid, what="haproxy serving")
        done = threading.Event()
        t = threading.Thread(target=lambda: (haproxy_watch.wait_exit(root, h.pid, None), done.set()), daemon=True)
        t.start()
        time.sleep(0.2)
        assert not done.is_set()
        h.proc.send_signal(signal.SIGKILL)
        h.proc.wait(timeout=10)
        assert done.wait(10)
    finally:
        h.stop()


def test_a_site_without_it_exits_at_once_and_writes_nothing(tmp_path):
    site = inventory.load(EXAMPLES / "active-passive.yaml")
    root = make_root(tmp_path / "root", replace(site, vrrp=replace(site.vrrp, haproxy_watch=False)))
    log = tmp_path / "watch.log"
    w = watcher(root, log)
    assert w.wait(timeout=60) == 0
    assert "not used by this site" in log.read_text()
    assert not (root / layout.HAPROXY_DOWN).exists()
