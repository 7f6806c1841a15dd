"""The agent's unit and what it leaves behind: state readable by non-root `status`, bounded start.

systemd is not PID 1 here: the unit is checked as rendered (and by `systemd-analyze
verify` in lint), and its UMask=0077 is reproduced by running the agent with that umask.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ha_ingress_proxy import inventory, layout, render
from ha_ingress_proxy.subproc import start

from ..conftest import EXAMPLES, ROOT
from .conftest import NodeRoot

UNIT = layout.AGENT_UNIT


def _service_section(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_gives_the_state_directory_an_explicit_mode_and_bounds_the_start():
    site = inventory.load(EXAMPLES / "active-active.yaml")
    service = _service_section(render.render_node(site, "proxy-1")[UNIT].content.decode())
    assert service["UMask"] == ["0077"]
    # /run/ha-ingress-proxy made by systemd, world-readable despite UMask=0077 (issue 10 item 8)
    assert service["RuntimeDirectory"] == ["ha-ingress-proxy"]
    assert service["RuntimeDirectoryMode"] == ["0755"]
    assert service["RuntimeDirectoryPreserve"] == ["yes"]  # a refusal fails the unit; state.json must stay to say why
    # oneshot units wait forever by default (issue 10 item 6)
    assert service["TimeoutStartSec"] == ["300s"]


def _child(argv: list[str], **kwargs) -> tuple[int, str, str]:
    proc = start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT / "src")}, **kwargs)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.fixture
def shared_root():
    """A node root that other users can traverse (pytest's tmp_path is under a root-only directory)."""
    base = Path(tempfile.mkdtemp(prefix="hip-sec1-"))
    os.chmod(base, 0o755)
    try:
        yield NodeRoot(base / "root")
    finally:
        shutil.rmtree(base)


def test_state_written_under_the_units_umask_is_readable_by_non_root_status(shared_root):
    r = shared_root
    os.chmod(r.path, 0o755)
    r.instance_data({"ha_ingress_node": "proxy-2"})
    ip = r.path.parent / "ip.json"
    ip.write_text("[]")
    os.chmod(ip, 0o644)
    args = ["--root", str(r.path), "--ip-addr-json", str(ip)]
    rc, out, err = _child([sys.executable, "-m", "ha_ingress_proxy.cli", "apply", *args], umask=0o077)
    assert rc == 0, err
    state_dir = r.file("run/ha-ingress-proxy")
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o755
    assert stat.S_IMODE(r.file("run/ha-ingress-proxy/state.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(r.file("etc/ha-ingress-proxy/secrets.env").stat().st_mode) == 0o600
    # `status` as nobody: reads the decision, not the secret
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    rc, out, err = _child([*nobody, sys.executable, "-m", "ha_ingress_proxy.cli", "status", "--json", *args])
    report = json.loads(out)
    assert (rc, report["ok"], report["node"]) == (0, True, "proxy-2"), err
    rc, _, err = _child([*nobody, "cat", str(r.file("etc/ha-ingress-proxy/secrets.env"))])
    assert rc != 0 and "Permission denied" in err
