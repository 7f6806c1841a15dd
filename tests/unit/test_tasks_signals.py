"""tasks.py: a SIGTERM to a running task unwinds like Ctrl-C, so the library's clean-up (unmounts,
loop devices, temporary trees: `finally` blocks and ExitStack callbacks) runs before the exit."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time
sys.path.insert(0, {root!r})
import tasks

def work(marker):
    try:
        print("started", flush=True)
        time.sleep(60)
    finally:
        open(marker, "w").write("cleaned up")

tasks._call(work, {marker!r})
"""


def test_sigterm_runs_the_clean_up_and_exits_143(tmp_path):
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), marker=str(marker))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert marker.read_text() == "cleaned up"
