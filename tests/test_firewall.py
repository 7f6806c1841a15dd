"""The packet filter (issue 10 items 3, 4): firewall.nft rendered from the plan, checked and run by the real nft.

Each variant is loaded into a fresh network namespace (`unshare --net`), so the
host's own ruleset is never touched. The packet tests send real VRRP packets
(ha_ingress_lab.rogue_vrrp) over a veth pair between two namespaces.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from dataclasses import replace

import pytest

from ha_ingress_lab import rogue_vrrp
from ha_ingress_proxy import inventory, render
from ha_ingress_proxy.subproc import run

from .conftest import EXAMPLES, need_root_and

NFT = "etc/ha-ingress-proxy/firewall.nft"


@pytest.fixture(scope="module", autouse=True)
def _tools():
    need_root_and("nft", "unshare", "ip")


def site(**changes):
    s = inventory.load(EXAMPLES / "active-passive.yaml")
    if "stats" in changes:
        changes["stats"] = replace(s.stats, **changes["stats"])
    if "vrrp" in changes:
        changes["vrrp"] = replace(s.vrrp, **changes["vrrp"])
    if "metrics" in changes:
        changes["metrics"] = replace(s.metrics, **changes["metrics"])
    return replace(s, **changes)


def nft_text(s) -> str:
    return render.render_node(s, s.nodes[0].name)[NFT].content.decode()


VARIANTS = {
    "default": {},
    "no-vrrp-filter": {"vrrp": {"filter": False}},
    "stats-node-no-allow": {"stats": {"bind": "node"}},
    "stats-node-allow": {"stats": {"bind": "node", "allow": ("10.0.0.0/8", "192.168.1.77/32")}},
    "metrics-node-allow": {"metrics": {"bind": "node", "allow": ("10.9.0.0/16",)}},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_loads_twice_in_a_fresh_netns(name, tmp_path):
    path = tmp_path / "firewall.nft"
    path.write_text(nft_text(site(**VARIANTS[name])))
    run(["unshare", "--net", "nft", "-c", "-f", str(path)])
    # loading it again replaces the table (the agent's reload), never duplicates rules
    listing = run(["unshare", "--net", "sh", "-ec", f"nft -f {path}; nft -f {path}; nft list ruleset"]).stdout
    assert listing.count("table inet ha_ingress_proxy") == 1
    assert listing.count("VRRP from a stranger") == (0 if name == "no-vrrp-filter" else 1)
    assert listing.count('"stats page"') == (1 if name.startswith("stats-node") else 0)
    assert listing.count('"metrics"') == (1 if name.startswith("metrics-node") else 0)


def test_bgp_mode_accepts_bgp_and_bfd_only_from_the_nodes_peers(tmp_path):
    bgp = inventory.load(EXAMPLES / "bgp.yaml")
    text = nft_text(bgp)
    peers = sorted({p.address for p in bgp.nodes[0].bgp_peers or bgp.bgp.peers})
    assert f"elements = {{ {', '.join(peers)} }}" in text
    path = tmp_path / "firewall.nft"
    path.write_text(text)
    listing = run(["unshare", "--net", "sh", "-ec", f"nft -f {path}; nft list ruleset"]).stdout
    assert listing.count('"BGP from a stranger"') == 1 and listing.count('"BFD from a stranger"') == 1
    assert '"BGP from a stranger"' not in nft_text(site())  # VRRP sites: no BGP rules


def test_rules_name_the_sites_nodes_and_stats_allow():
    text = nft_text(site(stats={"bind": "node", "allow": ("10.0.0.0/8",)}))
    assert "elements = { 192.168.1.9, 192.168.1.11 }" in text
    assert "elements = { 10.0.0.0/8 }" in text
    assert 'iifname != "lo" tcp dport 8888 ip saddr != @stats_allow counter drop' in text
    # it only drops: an accept here would not override another table's drop, and is not needed
    rules = [l for l in text.splitlines() if not l.lstrip().startswith("#")]
    assert not [l for l in rules if " accept" in l.replace("policy accept", "")]


def test_a_bad_nft_file_fails_the_check(tmp_path):
    """The check used by lint and here is not a no-op: a broken file fails it."""
    path = tmp_path / "bad.nft"
    path.write_text(nft_text(site()).replace("ip saddr != @vrrp_peers", "ip saddr != @no_such_set"))
    assert run(["unshare", "--net", "nft", "-c", "-f", str(path)], check=False).returncode != 0


# --------------------------------------------------------------------------- packets


def _drops_after_adverts(tmp_path, src_peer: bool) -> int:
    """A node namespace with the filter loaded, a sender namespace on a veth pair; returns the VRRP drop counter."""
    s = site()
    node, other = s.nodes[0].address, s.nodes[1].address
    sender = other if src_peer else "192.168.1.200"
    tmp_path.mkdir(parents=True, exist_ok=True)
    nft = tmp_path / "firewall.nft"
    nft.write_text(nft_text(s))
    prefix = f"{os.environ.get('HIP_LAB_PREFIX', 'hil')}-fw{'p' if src_peer else 's'}"
    ns_node, ns_snd = f"{prefix}-node", f"{prefix}-snd"
    for ns in (ns_node, ns_snd):
        run(["ip", "netns", "del", ns], check=False)
        run(["ip", "netns", "add", ns])
    try:
        run(["ip", "-n", ns_node, "link", "add", "lab0", "type", "veth", "peer", "name", "lab0", "netns", ns_snd])
        for ns, addr in ((ns_node, node), (ns_snd, sender)):
            run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "lab0"])
            run(["ip", "-n", ns, "link", "set", "lab0", "up"])
        run(["ip", "netns", "exec", ns_node, "nft", "-f", str(nft)])
        payload = rogue_vrrp.advert(3, 51, 255, ["192.168.1.10"], 0.1, sender, node)
        pkt = rogue_vrrp.ip_packet(sender, node, payload)
        code = (f"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_RAW, 112); "
                f"s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1); "
                f"[s.sendto(bytes.fromhex('{pkt.hex()}'), ('{node}', 0)) for _ in range(5)]")
        # a counter of every VRRP packet that arrived, in a table of the test's own (runs first)
        seen = "table inet seen {\n chain c {\n type filter hook input priority -100; policy accept;\n ip protocol vrrp counter\n }\n}\n"
        run(["ip", "netns", "exec", ns_node, "nft", "-f", "-"], input=seen)
        run(["ip", "netns", "exec", ns_snd, sys.executable, "-c", code])
        for _ in range(100):  # the veth delivers asynchronously
            if "counter packets 5 " in run(["ip", "netns", "exec", ns_node, "nft", "list", "table", "inet", "seen"]).stdout:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the 5 adverts never arrived at the node namespace")
        out = run(["ip", "netns", "exec", ns_node, "nft", "list", "chain", "inet", "ha_ingress_proxy", "input"]).stdout
        line = next(l for l in out.splitlines() if "VRRP from a stranger" in l)
        return int(line.split("counter packets", 1)[1].split()[0])
    finally:
        for ns in (ns_node, ns_snd):
            run(["ip", "netns", "del", ns], check=False)


def test_vrrp_from_a_stranger_is_dropped_and_from_a_peer_is_not(tmp_path):
    assert _drops_after_adverts(tmp_path / "stranger", src_peer=False) == 5
    assert _drops_after_adverts(tmp_path / "peer", src_peer=True) == 0


def test_rogue_adverts_are_valid_vrrp():
    """Checksums verify the way a receiver checks them (RFC 3768 for v2, RFC 5798 for v3)."""
    v2 = rogue_vrrp.advert(2, 51, 255, ["192.168.1.10"], 1, "192.168.1.200", "224.0.0.18")
    assert v2[0] == 0x21 and v2[1:4] == bytes([51, 255, 1]) and v2[5] == 1 and rogue_vrrp.checksum(v2) == 0
    v3 = rogue_vrrp.advert(3, 61, 255, ["192.168.1.12"], 0.1, "192.168.1.200", "192.168.1.9")
    pseudo = socket.inet_aton("192.168.1.200") + socket.inet_aton("192.168.1.9") + struct.pack("!BBH", 0, 112, len(v3))
    assert v3[0] == 0x31 and struct.unpack("!H", v3[4:6])[0] == 10 and rogue_vrrp.checksum(pseudo + v3) == 0
    ip = rogue_vrrp.ip_packet("192.168.1.200", "192.168.1.9", v3)
    assert ip[8] == 255 and ip[9] == 112 and rogue_vrrp.checksum(ip[:20]) == 0
