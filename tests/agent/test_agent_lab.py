"""The agent for real in a network namespace: apply gates keepalived, as the units' Requires= does.

systemd is not PID 1 here, so a small launcher stands in for the unit ordering:
`apply || exit 1` is the agent unit failing under keepalived's/haproxy's
Requires=+After=, `test -s keepalived.conf` is the drop-in's
ConditionFileNotEmpty. The real units' ordering is tested in the image e2e.

apply runs with --root on a directory holding the rendered node tree (what the
image carries) and reads the namespace's real addresses with `ip`; then
node_overlay.mount_script lays that directory over /etc and /usr in a private
mount namespace, so haproxy and keepalived read the agent's files at their
real paths. All addresses live in namespaces this test creates; nothing leaves them.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from ha_ingress_build.node_overlay import mount_script, users_layer
from ha_ingress_proxy import inventory, render
from ha_ingress_proxy.subproc import run, start

from ..conftest import EXAMPLES, ROOT, need_root_and
from .conftest import PASSWORD

pytestmark = pytest.mark.lab

LAB_PREFIX = "10.250.0."  # the example's 192.168.1.x moved to an address range only these namespaces use
NODE = LAB_PREFIX + "9"
VIP = LAB_PREFIX + "10"
MAXCONN = 4096


@pytest.fixture
def netns():
    need_root_and("ip", "unshare", "haproxy", "keepalived", "mount")
    tag = f"hipagent{os.getpid() % 100000}"
    ns, peer = tag, f"{tag}p"
    run(["ip", "netns", "add", ns])
    run(["ip", "netns", "add", peer])
    try:
        run(["ip", "-n", ns, "link", "add", "ens192", "type", "veth", "peer", "name", "peer0", "netns", peer])
        run(["ip", "-n", ns, "addr", "add", f"{NODE}/24", "dev", "ens192"])
        for n, dev in ((ns, "ens192"), (ns, "lo"), (peer, "peer0"), (peer, "lo")):
            run(["ip", "-n", n, "link", "set", dev, "up"])
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"])
        yield ns
    finally:
        for n in (ns, peer):
            _kill_all(n)
            run(["ip", "netns", "del", n], check=False)


def _pids(ns: str) -> list[int]:
    return [int(p) for p in (run(["ip", "netns", "pids", ns], check=False).stdout or "").split()]


def _kill_all(ns: str) -> None:
    """Every process in the namespace is one this test started: stop each by PID."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids(ns):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while _pids(ns) and time.monotonic() < deadline:
            time.sleep(0.1)


def _lab_root(tmp_path: Path, metadata: dict) -> Path:
    text = (EXAMPLES / "active-passive.yaml").read_text().replace("192.168.1.", LAB_PREFIX)
    # the unit's LimitNOFILE= (2 * maxconn + 1024) must fit this sandbox's hard open-file limit
    text += f"haproxy: {{maxconn: {MAXCONN}}}\n"
    site = inventory.validate(inventory.parse_yaml(text, "lab.yaml"), "lab.yaml")
    root = tmp_path / "root"
    root.mkdir(parents=True, exist_ok=True)  # write_tree writes below an existing root
    render.write_tree(render.render_node(site, "proxy-1"), root)  # what the image carries
    (root / "proc").mkdir()
    (root / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz ro quiet\n")
    data = root / "run/cloud-init/instance-data.json"
    data.parent.mkdir(parents=True)
    data.write_text(json.dumps({"v1": {"cloud_name": "nocloud"}, "ds": {"meta_data": metadata}}))
    os.chmod(data, 0o644)  # as cloud-init writes it; the password arrives by write_files, as on the image
    secrets_env = root / "etc/ha-ingress-proxy/secrets.env"
    secrets_env.write_text(f"HAPROXY_STATS_PASSWORD={PASSWORD}\n")
    os.chmod(secrets_env, 0o600)
    (root / "var/lib/haproxy").mkdir(parents=True)
    # what the package's sysusers.d adds on a node: keepalived's script_user (an extra overlay layer)
    users_layer(root, tmp_path / "extra")
    return root


def _launcher(root: Path) -> list[str]:
    agent = shlex.join([sys.executable, "-m", "ha_ingress_proxy.cli", "apply", "--root", str(root)])
    script = "\n".join(
        [
            f"{agent} || {{ echo 'launcher: apply refused; haproxy and keepalived not started'; exit 1; }}",
            mount_script(root, extra=root.parent / "extra"),
            f"mount --bind {shlex.quote(str(root / 'var/lib/haproxy'))} /var/lib/haproxy",
            # the daemons' pid files where `status --root` reads them
            f"mount --bind {shlex.quote(str(root / 'run'))} /run",
            "test -s /etc/ha-ingress-proxy/keepalived.conf || exit 1",
            "set -a; . /etc/ha-ingress-proxy/secrets.env; set +a",
            f"ulimit -n {2 * MAXCONN + 1024}",  # the haproxy drop-in's LimitNOFILE=
            "haproxy -D -f /etc/ha-ingress-proxy/haproxy.cfg",
            "exec keepalived -n -l -D --vrrp --use-file=/etc/ha-ingress-proxy/keepalived.conf",
        ]
    )
    return ["unshare", "--mount", "sh", "-ec", script]


def _addresses(ns: str) -> set[str]:
    data = json.loads(run(["ip", "-n", ns, "-j", "-4", "addr"]).stdout)
    return {a["local"] for link in data for a in link.get("addr_info", [])}


def _status(ns: str, root: Path) -> dict:
    # status reads the daemons' liveness below its root: <root>/proc is the real /proc here
    # (in a mount namespace of its own; the agent's made-up cmdline is hidden meanwhile)
    status = shlex.join([sys.executable, "-m", "ha_ingress_proxy.cli", "status", "--json", "--root", str(root)])
    script = f"mount --make-rprivate / && mount --bind /proc {shlex.quote(str(root / 'proc'))} && exec {status}"
    argv = ["ip", "netns", "exec", ns, "unshare", "--mount", "sh", "-ec", script]
    proc = run(argv, env={"PYTHONPATH": str(ROOT / "src")}, check=False)
    return json.loads(proc.stdout)


def test_applied_node_runs_keepalived_and_takes_its_vip(netns, tmp_path):
    root = _lab_root(tmp_path, {"ha_ingress_role": "master"})
    log = open(tmp_path / "launcher.log", "wb")
    proc = start(["ip", "netns", "exec", netns, *_launcher(root)], stdout=log, stderr=log, env={"PYTHONPATH": str(ROOT / "src")})
    try:
        deadline = time.monotonic() + 20
        while VIP not in _addresses(netns) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert VIP in _addresses(netns), (tmp_path / "launcher.log").read_text()
        report = _status(netns, root)
        assert (report["ok"], report["node"], report["role"], report["where"]) == (
            True, "proxy-1", "master", "/run/cloud-init/instance-data.json: ds.meta_data.ha_ingress_role",
        )
        assert report["held"] == [VIP] and report["vrrp"] == {VIP: "MASTER"}
        assert report["keepalived"]["running"] and report["haproxy_process"]["running"]
        assert report["haproxy"] == {"reachable": True, "drain_flag": False}
        assert sorted(report["backends"]) == ["http", "https"]
    finally:
        _kill_all(netns)
        proc.wait(timeout=10)
        log.close()


def test_refused_apply_never_starts_keepalived(netns, tmp_path):
    root = _lab_root(tmp_path, {"ha_ingress_node": "proxy-9"})
    (root / "etc/ha-ingress-proxy/keepalived.conf").write_text("# left from an earlier boot\n")
    proc = run(["ip", "netns", "exec", netns, *_launcher(root)], env={"PYTHONPATH": str(ROOT / "src")}, check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "/etc/ha-ingress-proxy/keepalived.conf: removed",
        "ha-ingress-proxy: refused: /run/cloud-init/instance-data.json: ds.meta_data.ha_ingress_node: 'proxy-9' "
        "is not a node of site dc1-ingress (nodes: proxy-1, proxy-2)",
        "launcher: apply refused; haproxy and keepalived not started",
    ]
    time.sleep(1)
    assert _pids(netns) == [] and VIP not in _addresses(netns)
    assert not (root / "etc/ha-ingress-proxy/keepalived.conf").exists()
    report = _status(netns, root)
    assert (report["ok"], report["result"]) == (False, "refused")
