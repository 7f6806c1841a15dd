"""keepalived's notify_backup grace on a running lab: real keepalived runs the rendered script.

A VIP that moves by VRRP preemption (here: `resume` of the drained master, which then takes its
VIP back) leaves the old holder at once; the notify_backup script keeps it local there for the
grace (a local route, its own metric), so packets a client still sends to the old MAC are served.
Timings are for `invoke bench --failover --scenario failback`; this asserts behaviour: the route
comes and goes on the old holder, keepalived's address survives the route's removal on the new
one, and no request fails across the move (the probe's timeout is generous, as in test_drain).
"""

from __future__ import annotations

import time
from datetime import datetime

from ha_ingress_lab.netns_lab import LAB_IF
from ha_ingress_proxy.plan import BACKUP_GRACE_METRIC
from ha_ingress_proxy.subproc import start

from .conftest import load

TIMEOUT = 2.5  # generous, as in test_drain: a starved client must not fail the test; a reset still does


def _grace_event(line: str, vip: str) -> bool:
    return f"local {vip} dev lo " in line and f"metric {BACKUP_GRACE_METRIC}" in line


def _grace_routes(lab, name: str) -> list[str]:
    out = lab.ip(lab.members[name].ns, "-o", "route", "show", "table", "local", check=False).stdout or ""
    return [line for line in out.splitlines() if f"metric {BACKUP_GRACE_METRIC}" in line]


def _until(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _when(events: list[str], offset: float, cond) -> float | None:
    """The first event (an `ip -ts monitor` line) that cond accepts, as time.monotonic()."""
    for line in events:
        if line.startswith("[") and cond(line):
            stamp, _, rest = line[1:].partition("] ")
            return datetime.fromisoformat(stamp).timestamp() - offset
    return None


def test_a_preemption_move_keeps_the_vip_local_on_the_old_holder_for_the_grace(make_lab, tmp_path):
    site = load("active-active")  # preempt: true
    lab = make_lab(site)
    lab.wait_vips(lab.masters())
    for node in site.nodes:
        lab.agent(node.name, "apply")
    vip = site.vips[0].address
    master = lab.masters()[vip]
    other = next(n.name for n in site.nodes if n.name != master)
    lab.agent(master, "drain", "--wait", "0")  # FAULT: no notify_backup; the VIP moves to `other`
    assert lab.vip_holders()[vip] == [other]
    assert _until(lambda: not _grace_routes(lab, master) and not _grace_routes(lab, other), 10)

    # The client keeps sending to the old holder after the move (a late ARP change, as on the VM pair),
    # and the route changes are logged as they happen (a poll can miss a 2 s route on a starved machine).
    lab.pin_client_arp(vip, other)
    monitors = {}
    for name in (master, other):
        log = tmp_path / f"{name}-routes.log"
        monitors[name] = (log, start(["ip", "-n", lab.members[name].ns, "-ts", "-o", "monitor", "route", "address"],
                                     stdout=log.open("w")))
    offset = time.time() - time.monotonic()
    try:
        probe = lab.probe([t for t in lab.targets() if t.startswith(f"{vip}:")], timeout=TIMEOUT)
        time.sleep(0.5)
        lab.agent(master, "resume")  # FAULT -> BACKUP -> MASTER by preemption; `other` MASTER -> BACKUP
        lab.wait_vips(lab.masters(), timeout=10)
        # the grace routes go after the grace (on `master` too: its FAULT -> BACKUP ran the script)
        gone = _until(lambda: not _grace_routes(lab, other) and not _grace_routes(lab, master), 15)
        time.sleep(1.0)
        results = probe.stop()
    finally:
        lab.unpin_client_arp(vip)
        for _, proc in monitors.values():
            proc.terminate()
            proc.wait(timeout=10)
    events = {name: log.read_text().splitlines() for name, (log, _) in monitors.items()}

    left = _when(events[other], offset, lambda e: "Deleted" in e and f" inet {vip}/32 " in e)
    added = _when(events[other], offset, lambda e: "Deleted" not in e and _grace_event(e, vip))
    removed = _when(events[other], offset, lambda e: "Deleted" in e and _grace_event(e, vip))
    assert None not in (left, added, removed), events[other]  # the old holder kept the VIP local, then let it go
    assert gone, (_grace_routes(lab, other), _grace_routes(lab, master))
    # The new master left FAULT through BACKUP (its own grace route) and became MASTER within the grace:
    # the route's removal named its metric and left keepalived's address alone.
    assert _when(events[master], offset, lambda e: "Deleted" in e and _grace_event(e, vip)), events[master]
    assert lab.vip_holders()[vip] == [master]
    assert f" {vip}/32 " in lab.ip(lab.members[master].ns, "-4", "-o", "addr", "show", "dev", LAB_IF).stdout
    # Requests the client sent to the old holder after the VIP left it were served there, all of them,
    # until the grace ended; the requests that reached it after the grace were not (it was the route).
    during = [r for r in results if r[0] >= left and r[1] <= removed]
    after = [r for r in results if r[0] >= removed + 0.1]
    assert during and all(r[3] for r in during), [r for r in during if not r[3]][:10]
    assert after and not any(r[3] for r in after), [r for r in after if r[3]][:10]
