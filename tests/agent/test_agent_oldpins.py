"""The agent under EL9's stack: Python 3.9, Jinja2 2.11.3 (+ MarkupSafe 2.0.1), PyYAML 5.4.1.

A venv with those pins is built once under build/ and reused. Python 3.9 is
taken from pyenv or PATH; without one the test runs the pins on this Python
and says so (the pins are what break most often; 3.10+ syntax is caught by the
3.9 run). It skips only when pip cannot fetch the pins.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from ha_ingress_build import payload
from ha_ingress_proxy import layout, render
from ha_ingress_proxy.subproc import run
from ha_ingress_proxy.plan import plan

from ..conftest import ROOT

PINS = ("jinja2==2.11.3", "markupsafe==2.0.1", "pyyaml==5.4.1")
# Every module a node runs: the payload's allowlist (build and lab code never reach a node).
MODULES = [f"ha_ingress_proxy.{m.replace('/', '.')}".removesuffix(".__init__") for m in layout.RUNTIME_MODULES]


def _python39() -> str | None:
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.9*/bin/python3.9")) + [shutil.which("python3.9") or ""]
    for exe in candidates:
        if exe and run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"], check=False).returncode == 0:
            return exe
    return None


@pytest.fixture(scope="session")
def old_python() -> Path:
    base = _python39() or sys.executable
    tag = run([base, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()
    venv = ROOT / "build" / f"agent-oldpins-py{tag}"
    stamp = venv / ("stamp-" + "-".join(PINS))
    if not stamp.exists():
        shutil.rmtree(venv, ignore_errors=True)
        run([base, "-m", "venv", str(venv)], context="creating the old-pins venv")
        proc = run([venv / "bin/python", "-m", "pip", "install", "-q", *PINS], check=False, timeout=600)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"pip could not install {' '.join(PINS)} for Python {tag}: {proc.stdout.strip().splitlines()[-1:]}")
        stamp.touch()
    return venv / "bin/python"


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"}


def test_old_pins_are_what_runs(old_python):
    out = run(
        [old_python, "-c", "import sys, jinja2, yaml, markupsafe; print(sys.version_info[0], sys.version_info[1], jinja2.__version__, yaml.__version__, markupsafe.__version__)"],
        env=_env(),
    ).stdout.split()
    assert out[2:] == ["2.11.3", "5.4.1", "2.0.1"]
    if _python39():
        assert out[:2] == ["3", "9"]


def test_every_module_imports_under_old_pins(old_python):
    run([old_python, "-c", "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)", *MODULES], env=_env())


def test_apply_and_status_under_old_pins_match_the_build(old_python, node_root, tmp_path):
    node_root.instance_data({"ha_ingress_role": "backup"})
    ip = tmp_path / "ip.json"
    ip.write_text(json.dumps([{"ifname": "ens192", "addr_info": [{"family": "inet", "local": "192.168.1.11"}]}]))
    base = [old_python, "-m", "ha_ingress_proxy.cli"]
    args = ["--root", str(node_root.path), "--ip-addr-json", str(ip)]
    out = run([*base, "apply", *args], env=_env()).stdout
    assert "applied: node proxy-2 (backup)" in out
    assert "unchanged: node proxy-2" in run([*base, "apply", *args], env=_env()).stdout
    # Jinja2 2.11 renders the same bytes as the build's Jinja2
    want = render.render(plan(node_root.site, "proxy-2"), only=layout.ROLE_FILES)
    for rel, f in want.items():
        assert node_root.file(rel).read_bytes() == f.content, rel
    report = json.loads(run([*base, "status", "--json", *args], env=_env()).stdout)
    assert (report["ok"], report["node"], report["role"]) == (True, "proxy-2", "backup")
    # the old YAML loader refuses a bad node file the same way
    node_root.node_file("ha_ingress_node: proxy-1\nha_ingress_node: proxy-2\n")
    proc = run([*base, "apply", *args], env=_env(), check=False)
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1] == (
        "ha-ingress-proxy: refused: /etc/ha-ingress-proxy/node.yaml: line 2 column 1: duplicate key 'ha_ingress_node' (first at line 1)"
    )
    assert not os.path.exists(node_root.file("etc/ha-ingress-proxy/keepalived.conf"))


def test_agent_runs_from_the_runtime_alone_and_loads_no_build_or_lab_code(old_python, node_root, tmp_path):
    """The node runtime as the packages ship it (payload.python_package), in a venv holding only
    Jinja2, MarkupSafe and PyYAML: apply works, and no build, lab or test module is ever loaded."""
    shipped = tmp_path / "python"
    for rel, f in payload.python_package().items():
        dest = shipped / rel.removeprefix(layout.PYTHON_DIR + "/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(f.content)
    node_root.instance_data({"ha_ingress_role": "master"})
    ip = tmp_path / "ip.json"
    ip.write_text(json.dumps([{"ifname": "ens192", "addr_info": [{"family": "inet", "local": "192.168.1.9"}]}]))
    script = (
        "import sys\n"
        "from ha_ingress_proxy.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
        "sys.exit(rc)\n"
    )
    out = run([old_python, "-I", "-c", f"import sys; sys.path.insert(0, {str(shipped)!r})\n" + script,
               "apply", "--root", str(node_root.path), "--ip-addr-json", str(ip)],
              env={"PYTHONDONTWRITEBYTECODE": "1"}).stdout
    assert "unchanged: node proxy-1 (master)" in out  # the image already carries proxy-1's files and secrets.env
    loaded = out.split("MODULES ", 1)[1].split()
    foreign = [m for m in loaded if m.split(".")[0] in {"ha_ingress_build", "ha_ingress_lab", "testinfra", "invoke", "pytest", "tests", "paramiko"}]
    assert not foreign, foreign
    assert all(not m.startswith("ha_ingress") or m.startswith("ha_ingress_proxy") for m in loaded)
