"""haproxy's death watcher on a running lab: `ha-ingress-proxy watch-haproxy` in each node, real
haproxy (-Ws) and keepalived tracking the watcher's file (track_file hip_haproxy, weight 0).

Asserted, as behaviour (the timing is `invoke bench --failover --scenario haproxy-death`):
reloads (SIGUSR2, the master stays) never trip it and move nothing; SIGKILL of haproxy's
master alone puts the node in FAULT through the watcher's file (keepalived's log says which
tracker) and the VIP moves; a new haproxy (what systemd's Restart= starts) is followed: the
file goes back to 0 and the node leaves FAULT, without the VIP coming back (nopreempt).
"""

from __future__ import annotations

import os
import signal
import time

from ha_ingress_lab.failover_scenarios import fault_causes
from ha_ingress_lab.netns_lab import HAPROXY_DOWN, _alive

from .conftest import load


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout}s: {what}"
        time.sleep(0.05)


def test_watcher_ignores_reloads_and_moves_the_vip_when_haproxy_master_is_killed(make_lab):
    site = load("active-passive")
    lab = make_lab(site)
    vip = site.vips[0].address
    master, backup = site.nodes[0].name, site.nodes[1].name
    lab.wait_vips({vip: master})
    flag = {n.name: lab.node_path(n.name, HAPROXY_DOWN) for n in site.nodes}
    assert {n: f.read_text() for n, f in flag.items()} == {master: "0\n", backup: "0\n"}

    # Reloads: the master re-executes itself (same PID), a new worker takes over.
    mark = lab.keepalived_log_mark()
    master_pid = lab.members[master].procs["haproxy"].pid
    for _ in range(3):
        workers = set(lab.haproxy_pids(master)) - {master_pid}
        lab.agent(master, "reload", "--haproxy-only")
        _wait(lambda: set(lab.haproxy_pids(master)) - {master_pid} - workers, 20, "a new haproxy worker after the reload")
    time.sleep(1.0)  # a whole check interval: the backstop check would have run too
    assert lab.haproxy_pids(master)[0] == master_pid
    assert flag[master].read_text() == "0\n"
    # Nothing put the master in FAULT (neither the watcher's file nor the check), so it never gave
    # the VIP up. (A backup starved of adverts on this shared machine can still turn MASTER for a
    # moment, docs/lab.md "False failovers"; priorities then leave the VIP on the master.)
    assert fault_causes(lab, master, mark) == [], lab.keepalived_events(mark, "FAULT")
    assert not lab.keepalived_events(mark, "hip_haproxy")
    lab.wait_vips({vip: master}, timeout=10)

    # SIGKILL of the master alone (its worker leaves when the master's pipe closes).
    mark = lab.keepalived_log_mark()
    old = lab.haproxy_pids(master)
    os.kill(master_pid, signal.SIGKILL)
    lab.reap(master, "haproxy")  # as systemd would
    lab.wait_vips({vip: backup}, timeout=15)
    assert flag[master].read_text() == "1\n"
    assert "watcher" in fault_causes(lab, master, mark), lab.keepalived_events(mark, "FAULT")
    _wait(lambda: not any(_alive(p) for p in old), 10, "the old worker gone")

    # systemd's Restart=: a new master; the watcher follows it and the node leaves FAULT.
    mark = lab.keepalived_log_mark()
    lab.start_daemon(master, "haproxy")
    lab.wait_haproxy(master)
    _wait(lambda: flag[master].read_text() == "0\n", 15, "the watcher writes 0 for the new master")
    _wait(lambda: lab.keepalived_events(mark, "tracked file hip_haproxy leaving FAULT"), 15, "keepalived leaves FAULT")
    time.sleep(1.0)
    assert lab.vip_holders()[vip] == [backup]  # nopreempt: it stays where it went
    assert flag[master].read_text() == "0\n"  # and stays 0: no flapping
    assert lab.members[master].procs["haproxy-watch"].poll() is None
