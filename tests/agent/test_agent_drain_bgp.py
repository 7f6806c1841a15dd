"""`drain` / `resume` / `status` in mode bgp on a --root tree: the refusals, the drain file, the withdraw confirmed
from FRR, and status rendered from FRR's JSON.

Two stand-ins, because neither can run at a --root tree: haproxy's stats socket (FakeHaproxy, as in
test_agent_drain.py) and vtysh (fake_vtysh.py, which replays the real vtysh output of FRR 8.4.4 captured in
the BGP lab; see tests/agent/data/frr-8.4.4/README.md). The other nodes' health is peer_check's answer. The
same drain with the real gate, FRR, router and haproxy is tests/lab/test_bgp_lab.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from ha_ingress_lab.bgp_lab import bgp_site
from ha_ingress_proxy import cli
from ha_ingress_proxy.agent import bgp_gate, drain, frr
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.plan import plan

from .conftest import NodeRoot
from .test_agent_drain import FakeHaproxy

FAKE = Path(__file__).resolve().parent / "fake_vtysh.py"
DATA = FAKE.parent / "data" / "frr-8.4.4"
VIPS = "203.0.113.10, 203.0.113.11"


def vtysh(state: str) -> list[str]:
    return [sys.executable, str(FAKE), state]


def site(stats_bind: str = "node"):
    """The site the fixtures were captured with: nodes n1 (10.77.0.11) and n2, peers 10.77.0.1 and 10.77.0.2."""
    s = bgp_site(2, more_vips=("203.0.113.11",), more_peers=("10.77.0.2",))
    return dataclasses.replace(s, stats=dataclasses.replace(s.stats, bind=stats_bind))


@pytest.fixture
def bgp_root(tmp_path):
    root = NodeRoot(tmp_path / "root", site=site())
    yield from _applied(root, tmp_path)


@pytest.fixture
def loopback_root(tmp_path):
    root = NodeRoot(tmp_path / "root", site=site("127.0.0.1"))
    yield from _applied(root, tmp_path)


def _apply(root: NodeRoot, tmp_path) -> None:
    root.instance_data({"ha_ingress_node": "n1"})
    ip = tmp_path / "ip.json"
    ip.write_text(json.dumps([{"ifname": "lab0", "addr_info": [{"family": "inet", "local": "10.77.0.11", "prefixlen": 24}]}]))
    assert cli.main(["apply", "--root", str(root.path), "--ip-addr-json", str(ip)]) == 0


def _applied(root: NodeRoot, tmp_path):
    _apply(root, tmp_path)
    root.haproxy = FakeHaproxyInfo(root.file("var/lib/haproxy/stats"))
    root.file("var/lib/haproxy/ha-ingress-proxy-status").symlink_to("stats")
    root.auto = vtysh(f"auto:{root.file('var/lib/ha-ingress-proxy/drain')}")
    yield root
    root.haproxy.close()


class FakeHaproxyInfo(FakeHaproxy):
    """FakeHaproxy that also answers `show info` (what the gate asks) as haproxy 2.6 starts its answer."""

    def _answer(self, line: str) -> str:
        if line == "show info":
            return "Name: HAProxy\nVersion: 2.6.12-1+deb12u1\nRelease_date: 2023/12/16\nNbthread: 2\nNbproc: 1\nProcess_num: 1\nPid: 4343\n\n"
        return super()._answer(line)


def peer_up(site, node):
    return True


def peer_down(site, node):
    return False


# --------------------------------------------------------------------------- frr.py on the captured output


def test_frr_reads_the_captured_sessions_bfd_and_advertised_routes():
    peers = json.loads((DATA / "commands.json").read_text())["peers"]
    now = frr.parse(peers, frr.documents((DATA / "announced.out").read_text()))
    assert [(p.address, p.bgp, p.bfd, p.advertised) for p in now.peers] == [
        ("10.77.0.1", "Established", "up", ("203.0.113.10/32", "203.0.113.11/32")),
        ("10.77.0.2", "Active", "down", ()),
    ]
    assert now.announced(["203.0.113.10/32", "203.0.113.11/32"]) == ["203.0.113.10/32", "203.0.113.11/32"]
    gone = frr.parse(peers, frr.documents((DATA / "withdrawn.out").read_text()))
    assert [p.advertised for p in gone.peers] == [(), ()] and gone.peers[0].established
    assert gone.advertising(["203.0.113.10/32"]) == {}


def test_frr_down_is_one_line_not_an_exception():
    now = frr.observe(vtysh("frr-down"), ["10.77.0.1", "10.77.0.2"])
    assert now.running is False and now.peers == []
    assert now.error.startswith("FRR not answering (") and now.error.endswith(
        ": exit 1: Exiting: failed to connect to any daemons.)")


def test_frr_refuses_answers_to_other_questions():
    now = frr.observe(vtysh("announced"), ["10.77.0.1"])  # the capture asked about two peers
    assert now.running is False and "exit 2" in now.error


# --------------------------------------------------------------------------- drain / resume


def test_bgp_drain_refused_when_no_other_node_answers(bgp_root):
    with pytest.raises(UserError) as exc:
        drain.drain(bgp_root.path, wait=0, peer_check=peer_down, vtysh=vtysh("announced"))
    assert exc.value.lines == [
        f"drain refused: this node announces {VIPS} and no other node's haproxy answers (n2 10.77.0.12:8888); "
        "--force drains anyway (no node announces it)"]
    assert not bgp_root.file("var/lib/ha-ingress-proxy/drain").exists()
    assert bgp_root.haproxy.flag is False  # refused before anything changed


def test_bgp_drain_refused_when_the_other_nodes_cannot_be_asked_and_force_overrides(loopback_root):
    root = loopback_root
    with pytest.raises(UserError) as exc:  # the real peer check: stats on loopback, nothing to ask
        drain.drain(root.path, wait=0, vtysh=root.auto)
    assert exc.value.lines == [
        f"drain refused: this node announces {VIPS} and whether another node's haproxy is healthy cannot be known: "
        "the stats listener is on 127.0.0.1 (`stats.bind: node` lets drain ask the other nodes); "
        "--force drains anyway (if no other node announces, nothing serves the VIPs)"]
    assert not root.file("var/lib/ha-ingress-proxy/drain").exists()

    out = drain.drain(root.path, wait=0, force=True, vtysh=root.auto)
    assert out.lines[0].startswith(f"warning: this node announces {VIPS} and whether another node's haproxy is healthy "
                                   "cannot be known") and out.lines[0].endswith("; draining anyway (--force)")
    assert out.info["forced"] is True and out.info["peers_haproxy"] == {"n2": None}


def test_bgp_drain_sets_the_flags_confirms_the_withdraw_and_survives_a_reboot(bgp_root, tmp_path, capsys):
    out = drain.drain(bgp_root.path, wait=0, peer_check=peer_up, vtysh=bgp_root.auto)
    assert out.lines[0].startswith(f"drained: withdrew {VIPS} from 10.77.0.1 in ")
    assert re.search(r" ms; waited \d+\.\d+s for streams, 1 stream\(s\) and 0 idle HTTP connection\(s\) left at the "
                     r"withdraw \(the routers rehash them to another node, which resets them\)$", out.lines[0]), out.lines
    assert out.info["waited_s"] <= 1.0  # --wait 0: it did not wait for the stream (loaded machine: polls are slow)
    assert out.lines[1] == ("state kept in /var/lib/ha-ingress-proxy/drain (survives a reboot); "
                            "`ha-ingress-proxy resume` undoes it")
    assert bgp_root.file("var/lib/ha-ingress-proxy/drain").read_text() == "1\n"
    assert bgp_root.haproxy.flag is True  # keep-alive clients were told Connection: close first
    info = json.loads(bgp_root.file("var/lib/ha-ingress-proxy/drain.json").read_text())
    assert info["withdrew"] == ["203.0.113.10", "203.0.113.11"] and info["streams_left_at_move"] == 1
    assert info["peers_haproxy"] == {"n2": True} and info["mode"] == "bgp"

    # a reboot: /run is a fresh tmpfs, apply runs again; /var/lib is kept, and the gate reads the file at start
    shutil.rmtree(bgp_root.file("run"))
    _apply(bgp_root, tmp_path)
    view = plan(bgp_root.site, "n1").bgp
    gate = bgp_gate.Gate(view, bgp_root.auto, bgp_root.file("var/lib/haproxy/stats"),
                         bgp_root.file("var/lib/ha-ingress-proxy/drain"), lambda line: None)
    assert gate.drained() is True  # the gate's check: it never announces while the file is non-zero
    again = drain.drain(bgp_root.path, wait=0, peer_check=peer_up, vtysh=bgp_root.auto)
    assert again.lines[0].startswith("already drained since ")


def test_bgp_drain_twice_says_already_and_resume_waits_for_the_announcement(bgp_root):
    drain.drain(bgp_root.path, wait=0, peer_check=peer_up, vtysh=bgp_root.auto)
    again = drain.drain(bgp_root.path, wait=0, peer_check=peer_down, vtysh=bgp_root.auto)
    assert again.lines[0].startswith("already drained since ")
    out = drain.resume(bgp_root.path, vtysh=bgp_root.auto)
    assert out.lines[-1].startswith(f"resumed: announcing {VIPS} to 10.77.0.1 again (")
    assert bgp_root.file("var/lib/ha-ingress-proxy/drain").read_text() == "0\n"
    assert not bgp_root.file("var/lib/ha-ingress-proxy/drain.json").exists()
    assert bgp_root.haproxy.flag is False
    assert drain.resume(bgp_root.path, vtysh=bgp_root.auto).lines == ["not drained; nothing to resume"]


def test_bgp_resume_says_when_the_vips_are_not_announced_again(bgp_root):
    drain.drain(bgp_root.path, wait=0, peer_check=peer_up, vtysh=bgp_root.auto)
    with pytest.raises(UserError) as exc:  # FRR keeps answering "nothing advertised": the gate is not announcing
        drain.resume_bgp(bgp_root.path, bgp_root.site, "n1", vtysh=vtysh("withdrawn"), timeout=0.3)
    assert exc.value.lines == [
        f"resumed (the drain file is 0), but {VIPS} not announced after 0.3s: the bgp-gate announces only while "
        "haproxy answers: is haproxy up, is ha-ingress-proxy-bgp-gate.service running?"]
    assert bgp_root.file("var/lib/ha-ingress-proxy/drain").read_text() == "0\n"


def test_bgp_drain_undone_when_frr_keeps_advertising(bgp_root):
    with pytest.raises(UserError) as exc:  # no gate acting on the drain file: FRR still advertises
        drain.drain_bgp(bgp_root.path, bgp_root.site, "n1", vtysh=vtysh("announced"), wait=0, peer_check=peer_up,
                        timeout=0.3)
    assert exc.value.lines == [
        "drain failed: FRR still advertises 203.0.113.10/32, 203.0.113.11/32 to 10.77.0.1 0.3s after the drain file "
        "was set (is ha-ingress-proxy-bgp-gate.service running? it withdraws while the file is non-zero); drain undone"]
    assert bgp_root.file("var/lib/ha-ingress-proxy/drain").read_text() == "0\n"
    assert bgp_root.haproxy.flag is False


def test_bgp_drain_with_frr_down_keeps_the_node_from_announcing(bgp_root, capsys):
    assert cli.main(["drain", "--root", str(bgp_root.path), "--wait", "0",
                     "--vtysh", " ".join(vtysh("frr-down"))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("FRR not answering (") and out[0].endswith("): this node announces nothing now")
    assert out[1] == "drained: this node announced no VIP; the bgp-gate will not announce until resume"
    assert bgp_root.file("var/lib/ha-ingress-proxy/drain").read_text() == "1\n"


# --------------------------------------------------------------------------- status


def _haproxy_running(root: NodeRoot) -> None:
    root.file("run/haproxy.pid").write_text("4343\n")
    root.file("proc/4343").mkdir(parents=True, exist_ok=True)
    root.file("proc/4343/comm").write_text("haproxy\n")


def test_bgp_status_shows_sessions_bfd_announced_vips_and_the_gate(bgp_root, capsys):
    _haproxy_running(bgp_root)
    root = str(bgp_root.path)
    assert cli.main(["status", "--root", root, "--vtysh", " ".join(bgp_root.auto)]) == 0
    human = capsys.readouterr().out.splitlines()
    assert "haproxy   running, pid 4343" in human
    assert not any(line.startswith(("keepalived", "vrrp")) for line in human)  # no VRRP in this mode
    i = human.index("drain     no (serving)")
    assert human[i + 1:i + 5] == [
        f"bgp       peer 10.77.0.1: Established, BFD up; advertised {VIPS}",
        "bgp       peer 10.77.0.2: Active, BFD down; advertised nothing",
        f"announced {VIPS} (advertised to an Established peer, from FRR)",
        "gate      announces: haproxy answers and the node is not drained (checks every 200 ms, rise 3, fall 2)",
    ]
    assert cli.main(["status", "--json", "--root", root, "--vtysh", " ".join(bgp_root.auto)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "vrrp" not in report and "keepalived" not in report
    assert report["bgp"]["announced"] == ["203.0.113.10", "203.0.113.11"]
    assert report["bgp"]["frr"]["peers"][0] == {"address": "10.77.0.1", "bgp": "Established", "bfd": "up",
                                                "advertised": ["203.0.113.10/32", "203.0.113.11/32"]}
    assert report["bgp"]["gate"]["announces"] is True and report["drain"]["drained"] is False


def test_bgp_status_of_a_drained_node(bgp_root, capsys):
    _haproxy_running(bgp_root)
    drain.drain(bgp_root.path, wait=0, peer_check=peer_up, vtysh=bgp_root.auto)
    assert cli.main(["status", "--root", str(bgp_root.path), "--vtysh", " ".join(bgp_root.auto)]) == 0
    human = capsys.readouterr().out.splitlines()
    line = next(x for x in human if x.startswith("drain "))
    assert line.startswith("drain     DRAINED since ") and line.endswith(
        f"(/var/lib/ha-ingress-proxy/drain: the bgp-gate announces nothing while it is set; withdrew {VIPS}; "
        "1 stream(s) open at the withdraw (reset); kept across reboot; `ha-ingress-proxy resume` undoes it)")
    assert "bgp       peer 10.77.0.1: Established, BFD up; advertised nothing" in human
    assert "announced none (advertised to an Established peer, from FRR)" in human
    assert "gate      withdraws: node drained (checks every 200 ms, rise 3, fall 2)" in human
    assert "haproxy   drain flag set: every HTTP response says Connection: close" in human


def test_bgp_status_with_frr_down_says_so_in_one_line_and_prints_the_rest(bgp_root, capsys):
    bgp_root.file("var/lib/haproxy/stats").unlink()  # haproxy gone too (its socket with it): the gate's check fails
    assert cli.main(["status", "--root", str(bgp_root.path), "--vtysh", " ".join(vtysh("frr-down"))]) == 0
    human = capsys.readouterr().out.splitlines()
    frr_lines = [x for x in human if x.startswith(("frr ", "bgp ", "announced"))]
    assert len(frr_lines) == 1 and frr_lines[0].startswith("frr       not running: FRR not answering (")
    assert frr_lines[0].endswith("exit 1: Exiting: failed to connect to any daemons.)")
    assert "gate      withdraws: haproxy does not answer (checks every 200 ms, rise 3, fall 2)" in human
    assert human[0].startswith("state     APPLIED: node n1") and "drain     no (serving)" in human
    assert any(x.startswith("haproxy   stats socket unreachable: ") for x in human)


# --------------------------------------------------------------------------- metrics


def _scrape(root, vtysh_argv, capsys) -> dict[str, str]:
    assert cli.main(["metrics", "--once", "--root", str(root.path), "--vtysh", " ".join(vtysh_argv)]) == 0
    return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1]
            for line in capsys.readouterr().out.splitlines() if line and not line.startswith("#")}


def test_bgp_metrics_export_frr_and_no_vrrp_series(bgp_root, capsys):
    """Every node holds every VIP in mode bgp and runs no keepalived: VRRP series would page VipDualMaster and
    KeepalivedDown on a healthy site, so they are left out and FRR's sessions and announcements exported."""
    _haproxy_running(bgp_root)
    site = 'site="dc1-ingress"'
    got = _scrape(bgp_root, bgp_root.auto, capsys)
    assert not [k for k in got if k.startswith(("ha_ingress_keepalived_up", "ha_ingress_vip_held", "ha_ingress_vrrp_state",
                                                "ha_ingress_vip_planned_master"))]
    assert got["ha_ingress_frr_up"] == "1"
    assert got[f'ha_ingress_bgp_peer_up{{{site},peer="10.77.0.1"}}'] == "1"
    assert got[f'ha_ingress_bgp_peer_up{{{site},peer="10.77.0.2"}}'] == "0"
    assert got[f'ha_ingress_bfd_peer_up{{{site},peer="10.77.0.1"}}'] == "1"
    assert got[f'ha_ingress_bgp_vip_announced{{{site},vip="203.0.113.10"}}'] == "1"
    assert got[f'ha_ingress_bgp_vip_announced{{{site},vip="203.0.113.11"}}'] == "1"
    assert got['ha_ingress_observe_error{what="frr"}'] == "0"

    drain.drain(bgp_root.path, wait=0, peer_check=peer_up, vtysh=bgp_root.auto)  # withdrawn: the page's condition
    got = _scrape(bgp_root, bgp_root.auto, capsys)
    assert got["ha_ingress_drained"] == "1"
    assert got[f'ha_ingress_bgp_vip_announced{{{site},vip="203.0.113.10"}}'] == "0"

    got = _scrape(bgp_root, vtysh("frr-down"), capsys)  # a dead FRR announces nothing: 0, not a missing series
    assert got["ha_ingress_frr_up"] == "0" and not [k for k in got if k.startswith("ha_ingress_bgp_peer_up")]
    assert got[f'ha_ingress_bgp_vip_announced{{{site},vip="203.0.113.11"}}'] == "0"
