"""The lab leaves nothing behind: every process stopped by PID, every namespace gone,
also when the test body fails or the process running the lab is interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from ha_ingress_lab import netns_lab as L
from ha_ingress_proxy.subproc import start

from .conftest import ROOT, load


def lab_pids(lab: L.Lab) -> list[int]:
    pids = []
    for m in lab.members.values():
        for proc in [*m.procs.values(), *([m.holder] if m.holder else [])]:
            pids += L.descendants(proc.pid)
    return pids


def ours() -> list[str]:
    return [ns for ns in L.netns_list() if ns.startswith(L.PREFIX + "-")]


def test_down_stops_every_process_and_removes_every_namespace(lab_ready, tmp_path):
    with L.Lab(load("active-active"), tmp_path) as lab:
        pids = lab_pids(lab)
        assert len(pids) >= 10  # holders, haproxy master+worker, keepalived (+vrrp child), rsyslog, servers
        assert len(ours()) == 1 + 2 + 2 + 1  # bridge, nodes, clusters, client
    assert not [p for p in pids if L._alive(p)]
    assert not ours()


def test_an_exception_in_the_test_still_tears_down(lab_ready, tmp_path):
    with pytest.raises(RuntimeError):
        with L.Lab(load("active-passive"), tmp_path) as lab:
            pids = lab_pids(lab)
            raise RuntimeError("test body failed")
    assert not [p for p in pids if L._alive(p)]
    assert not ours()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_lab_process_tears_down(lab_ready, tmp_path, sig):
    script = (
        "import signal, sys, time\n"
        # a background shell starts children with SIGINT ignored; Ctrl-C is what this models
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from pathlib import Path\n"
        "from ha_ingress_proxy import inventory\nfrom ha_ingress_lab import netns_lab as L\n"
        f"site = inventory.load({str(ROOT / 'examples/active-active.yaml')!r})\n"
        f"with L.Lab(site, Path({str(tmp_path)!r})) as lab:\n"
        "    print('UP', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = start([sys.executable, "-c", script], env={"PYTHONPATH": str(ROOT / "src")},
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "UP" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "UP" in line, f"lab did not come up: {line!r}"
        assert ours()
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            L.stop_proc(proc, 0)
    assert not ours()
