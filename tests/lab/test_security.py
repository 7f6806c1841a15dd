"""Trust boundaries on the lab segment (issue 10): a stranger's VRRP, the stats page, keepalived's script security.

Real keepalived, haproxy and nftables in network namespaces; the rogue's adverts
are real VRRP packets (ha_ingress_lab.rogue_vrrp, raw socket). Every test here
also has its failing twin: the seed's settings (multicast, no filter) let the
same rogue take the VIP, and a stats source outside stats.allow gets nothing.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ha_ingress_lab import bench, failover_scenarios
from ha_ingress_lab import netns_lab as L
from ha_ingress_proxy.subproc import run

from .conftest import EXAMPLES, load

TIMEOUT = 1.0


def _heard_from(lab, address: str) -> list[str]:
    """keepalived's log lines, on every node, about an advert from `address`."""
    lines = []
    for node in lab.site.nodes:
        log = (lab.workdir / "logs" / f"{node.name}-keepalived.log").read_text()
        lines += [line for line in log.splitlines() if f"advert from {address} " in line]
    return lines


def test_rogue_vrrp_cannot_take_a_vip(site, make_lab):
    lab = make_lab(site)
    res = failover_scenarios.run(lab, "rogue-vrrp", timeout=TIMEOUT)
    # the adverts reached the nodes and our table dropped them all: keepalived never heard one
    assert res.notes["dropped_by_filter"] > 0
    assert _heard_from(lab, res.notes["rogue"]) == []
    assert res.before == res.after == {vip: [node] for vip, node in lab.masters().items()}
    # No VIP move was seen while the rogue sent. (The outage and failed requests are the bench's
    # figures: on a loaded machine 0.1 s adverts can lose a beat with or without a rogue.)
    assert res.notes["false_failovers"] == 0, res.notes["holders_seen"]


def test_rogue_vrrp_takes_the_vip_from_the_seed_settings(make_lab):
    """The same rogue against multicast VRRP without the filter (the seed): the master gives the VIP up."""
    site = bench.seed_site(EXAMPLES / "active-passive.yaml")
    assert not site.vrrp.filter and not site.vrrp.unicast
    lab = make_lab(site)
    res = failover_scenarios.run(lab, "rogue-vrrp", timeout=TIMEOUT)
    vip = site.vips[0].address
    heard = _heard_from(lab, res.notes["rogue"])
    assert any("higher priority 255" in line for line in heard), heard
    assert res.notes["false_failovers"] >= 1
    assert any(h[vip] == [] for h in res.notes["holders_seen"]), res.notes["holders_seen"]
    assert res.notes["dropped_by_filter"] == 0
    assert res.failed_requests > 0


# keepalived's own words when script security is off or a script is unsafe (lib/notify.c, core/main.c)
SECURITY_WARNINGS = re.compile(
    r"SECURITY VIOLATION|script_security|Unsafe permissions|insecure|is not executable|"
    r"default user .* does not exist|Unable to set default user|Error setting global script uid",
    re.I,
)


def test_keepalived_runs_the_check_unprivileged_without_security_warnings(make_lab):
    site = load("active-passive")
    lab = make_lab(site)
    failover_scenarios.prepare(lab)
    for node in site.nodes:
        log = (lab.workdir / "logs" / f"{node.name}-keepalived.log").read_text()
        assert "VRRP_Script(chk_haproxy) succeeded" in log  # the script ran (as ha-ingress-check)
        bad = [line for line in log.splitlines() if SECURITY_WARNINGS.search(line)]
        assert not bad, bad
        # the user it runs as exists in the node's view, unprivileged, no shell
        entry = run([*lab.enter(node.name), "getent", "passwd", "ha-ingress-check"]).stdout.split(":")
        assert int(entry[2]) != 0 and entry[6].strip() == "/usr/sbin/nologin"


def _curl(lab, ns_member: str, url: str, *extra: str) -> tuple[int, str]:
    proc = run(["ip", "netns", "exec", lab.members[ns_member].ns, "curl", "-s", "-m", "3", "-o", "/dev/null",
                "-w", "%{http_code}", *extra, url], check=False)
    return proc.returncode, (proc.stdout or "").strip()


def test_stats_page_is_tls_only_and_open_only_to_stats_allow(make_lab):
    site = load("active-passive")
    client, _ = L.client_address(site)  # the address the lab gives its client
    site = replace(site, stats=replace(site.stats, bind="node", allow=(f"{client}/32",)))
    lab = make_lab(site)
    assert lab.client_addr == client
    node = site.nodes[0]
    m = lab.members[node.name]
    url = f"https://{node.address}:{site.stats.port}{site.stats.path}"
    auth = ["-u", f"{site.stats.user}:{lab.password}"]
    # TLS with the certificate the agent made: handshake works, the page answers (curl -k:
    # self-signed; the fingerprint is what status shows, compared below)
    rc, code = _curl(lab, "client", url, "-k", *auth)
    assert (rc, code) == (0, "200")
    got = run(["sh", "-c", f"ip netns exec {lab.members['client'].ns} openssl s_client -connect {node.address}:{site.stats.port} "
               "</dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"]).stdout
    assert got.strip().split("=", 1)[1] == m.stats_sha256
    # plain HTTP on the same port is refused (no page, whatever curl reports)
    rc, code = _curl(lab, "client", f"http://{node.address}:{site.stats.port}{site.stats.path}", *auth)
    assert code != "200"
    # a source outside stats.allow gets nothing at all: the packet filter drops its SYNs
    rogue = lab.add_rogue()
    rc, code = _curl(lab, rogue.name, url, "-k", *auth)
    assert code == "000" and rc == 28, (rc, code)  # 28: timed out
    assert lab.firewall_drops(node.name)["stats page"] > 0


def test_stats_plain_http_only_when_the_inventory_says_tls_false(make_lab):
    site = load("active-passive")
    site = replace(site, stats=replace(site.stats, bind="node", tls=False))
    lab = make_lab(site)
    node = site.nodes[0]
    # no stats.allow: nobody on the segment reaches it, not even the client
    rc, code = _curl(lab, "client", f"http://{node.address}:{site.stats.port}{site.stats.path}")
    assert code == "000", (rc, code)
    # on the node itself (loopback interface) it is plain HTTP, as asked
    proc = run([*lab.enter(node.name), "curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
                "-u", f"{site.stats.user}:{lab.password}", f"http://{node.address}:{site.stats.port}{site.stats.path}"], check=False)
    assert proc.stdout.strip() == "200"
