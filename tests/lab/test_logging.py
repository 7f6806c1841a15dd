"""haproxy's log reaches the operator's file, one line per request, over each haproxy.log_transport.

Real haproxy and rsyslog in the lab (docs/lab.md compares the transports' cost and
completeness under load in `invoke bench --throughput --log-transport ...`).
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from ha_ingress_proxy import layout

from .conftest import load

N = 60


def _lines(lab, node: str) -> list[str]:
    path = lab.node_path(node, layout.shown(layout.LOG_FILE))
    return path.read_text().splitlines() if path.exists() else []


def _requests(lab, vip: str, n: int) -> None:
    """n GETs on one keep-alive connection (one curl), each must answer 200."""
    out = lab.nsexec(lab.members["client"].ns, ["curl", "-s", "-w", "%{http_code}\\n", "-m", "20",
                                                *[x for i in range(n) for x in ("-o", "/dev/null", f"http://{vip}/n{i}")]], timeout=60).stdout
    assert out.split() == ["200"] * n


def _wait_lines(lab, node: str, want: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(lines := [x for x in _lines(lab, node) if '"GET /n' in x]) < want and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # nothing more than one line per request may arrive
    return [x for x in _lines(lab, node) if '"GET /n' in x]


@pytest.mark.parametrize("transport", ("udp", "unix", "ring"))
def test_one_log_line_per_request(make_lab, transport):
    site = load("active-active")
    lab = make_lab(replace(site, haproxy=replace(site.haproxy, log_transport=transport)), backend="haproxy")
    masters = lab.masters()
    lab.wait_vips(masters)
    vip = site.vips[0].address
    node = masters[vip]
    _requests(lab, vip, N)
    lines = _wait_lines(lab, node, N)
    assert len(lines) == N, lines[-3:]
    # option httplog's fields: the listener, a 200, the request line; rsyslog parsed the tag
    assert all(" http http/" in x and " 200 " in x and "haproxy[" in x for x in lines), lines[0]
    assert sorted(x.split('"GET /n', 1)[1].split(" ", 1)[0] for x in lines) == sorted(str(i) for i in range(N))
    if transport == "ring":
        # rsyslog down for a moment: the ring keeps the lines and its forwarder delivers them
        # once rsyslog listens again (UDP and unix datagrams sent meanwhile are lost)
        lab.kill_daemon(node, "rsyslog")
        lab.reap(node, "rsyslog")
        _requests(lab, vip, N)
        lab.start_daemon(node, "rsyslog")
        assert len(_wait_lines(lab, node, 2 * N, timeout=30)) == 2 * N
    # the node's /var/log goes with its mount namespace: the lab keeps a copy of haproxy's log in
    # its own directory when it goes down (logs/<node>-haproxy.log), where a bench run's failed
    # requests can be looked up
    seen = [x for x in _lines(lab, node) if '"GET /n' in x]
    lab.down()
    kept = [x for x in (lab.workdir / "logs" / f"{node}-haproxy.log").read_text().splitlines() if '"GET /n' in x]
    assert kept == seen and len(kept) == (2 * N if transport == "ring" else N)
