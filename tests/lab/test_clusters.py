"""Lab clusters that behave like ingress-nginx (real nginx): client identity through PROXY v2,
a drain through /healthz, a rolling worker restart. Real haproxy, keepalived and nginx in
network namespaces; behaviour is asserted, timings are measured by `invoke bench --failover`."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest

from ha_ingress_lab import failover_scenarios
from ha_ingress_proxy import inventory

from .conftest import EXAMPLES

TIMEOUT = 1.0
LINE = re.compile(r"(\S+) peer=(\S+) port=(\d+) status=(\d+)")


def ingress_nginx(proxy: bool) -> inventory.Site:
    site = inventory.load(EXAMPLES / "ingress-nginx.yaml")
    names = tuple(s.name for s in site.services) if proxy else ()
    return replace(site, clusters=tuple(replace(c, proxy_protocol=names) for c in site.clusters))


@pytest.mark.parametrize("proxy", [True, False], ids=["proxy-v2", "no-proxy"])
def test_client_identity_in_the_ingress_access_log(make_lab, proxy):
    site = ingress_nginx(proxy)
    lab = make_lab(site)
    lab.wait_vips(lab.masters())
    probe = lab.probe(lab.targets(), timeout=TIMEOUT)

    def logged(port: str) -> int:
        return sum(line.count(f" port={port} ") for cl in site.clusters
                   for line in [lab.access_log(cl.name).read_text()] if lab.access_log(cl.name).exists())

    # until both ports have traffic in the logs (a starved machine can take seconds to start the probe)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and min(logged("80"), logged("443")) < 20:
        time.sleep(0.2)
    results = probe.stop()
    time.sleep(0.2)  # nginx writes its access log line when the request ends
    ok = [r for r in results if r[3]]
    assert ok and {r[2].split(":")[1] for r in ok} == {"80", "443"}
    nodes = {n.address for n in site.nodes}
    lines = []
    for cl in site.clusters:
        lines += [LINE.match(line).groups() for line in lab.access_log(cl.name).read_text().splitlines()]
        assert "broken header" not in lab.error_log(cl.name).read_text()
    # every request the client saw succeed is in an access log, on 80 and on 443
    by_port = {p: [ln for ln in lines if ln[2] == p] for p in ("80", "443")}
    for port in ("80", "443"):
        assert len(by_port[port]) >= sum(1 for r in ok if r[2].split(":")[1] == port)
        assert all(ln[1] in nodes for ln in by_port[port])  # the connection came from a proxy node
        believed = {ln[0] for ln in by_port[port]}
        assert believed == ({lab.client_addr} if proxy else believed & nodes), (port, believed)
        assert believed
    if not proxy:
        assert all(ln[0] in nodes for ln in lines)  # without PROXY the ingress sees the tier


def test_cluster_drain_takes_the_cluster_out_before_nginx_stops(make_lab):
    lab = make_lab(ingress_nginx(True))
    res = failover_scenarios.run(lab, "cluster-drain", timeout=TIMEOUT)
    assert res.notes["cluster_out_ms"] is not None and res.notes["cluster_out_ms"] < 5000, res.record()
    assert res.notes["tail_clusters"] == [res.notes["other"]], res.record()
    assert res.recovered, res.record()


def test_a_blackholed_cluster_leaves_rotation_and_the_other_one_answers(make_lab):
    """A cluster that drops every packet (no RST): connections to it time out after `timeout connect`,
    the checks and `observe` take it out of rotation on every node, then only the other one answers."""
    lab = make_lab(ingress_nginx(True))
    res = failover_scenarios.run(lab, "cluster-blackhole", timeout=TIMEOUT)
    assert res.notes["cluster_out_ms"] is not None, res.record()
    assert res.notes["tail_clusters"] == [res.notes["other"]] and res.notes["tail_failed"] == 0, res.record()
    assert res.recovered, res.record()


def test_ingress_restart_replaces_the_workers_and_traffic_continues(make_lab):
    lab = make_lab(ingress_nginx(True))
    res = failover_scenarios.run(lab, "ingress-restart", timeout=TIMEOUT)
    assert res.notes["workers_before"] >= 2 and res.notes["workers_after"] >= 2
    assert res.recovered, res.record()
    end = max(r[0] for r in res.results)
    assert all(r[3] for r in res.results if r[0] >= end - 0.5), res.record()


def test_flapping_cluster_never_takes_the_other_one_out(make_lab):
    """/healthz of one cluster fails a random half of the checks: haproxy sees the failures, the other
    cluster stays in rotation on every node, and the client keeps being served."""
    lab = make_lab(ingress_nginx(True))
    res = failover_scenarios.run(lab, "flapping-cluster", timeout=TIMEOUT, duration=8.0)
    n = res.notes
    assert n["failed_checks_while_up"] > 0, res.record()  # the flap reaches haproxy's check
    assert n["other_cluster_downs"] == 0 and n["other_always_in"], res.record()
    assert n["state_changes"] == sum(n["state_changes_by_node"].values())
    t_fault = min(r[0] for r in res.results) + 0.5  # the probe runs 0.5 s before the flap starts
    assert any(r[3] and r[5] == n["other"] and r[0] > t_fault for r in res.results), res.record()
    assert res.recovered, res.record()


@pytest.mark.parametrize("retries", ["safe", "off"])
def test_a_safe_request_a_cluster_hangs_up_on_is_answered_by_the_other(make_lab, retries):
    """haproxy.l7_retries (docs/clusters.md): one cluster closes every request's connection without
    answering, as an ingress pod killed mid-request does. With `safe`, a GET it hung up on is sent
    again to the other cluster and the client gets 200; a POST is never sent twice (the client gets
    the 502). With `off`, GETs fail like POSTs. Counted against each nginx's own access log."""
    base = ingress_nginx(False)
    site = replace(base, haproxy=replace(base.haproxy, l7_retries=retries))
    lab = make_lab(site)
    lab.wait_vips(lab.masters())
    hung, other = site.clusters[0].name, site.clusters[1].name
    lab.hangup_cluster(hung)
    url = f"http://{site.vips[0].address}/"

    def send(method: str) -> str:
        body = ["-d", "x"] if method == "POST" else []
        out = lab.nsexec(lab.members["client"].ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                                                    *body, url], check=False).stdout
        return (out or "").strip()

    def logged(cluster: str) -> list[tuple[str, str]]:  # (method, status) of the port-80 requests
        path = lab.access_log(cluster)
        text = path.read_text() if path.exists() else ""
        return re.findall(r" port=80 status=(\d+) method=(\S+)", text)

    sent: list[tuple[str, str]] = []
    # two of each in turn: round robin (and the retries' redispatch) spreads both methods over both clusters
    while len(sent) < 40 and min(sum(1 for s, m in logged(hung) if m == meth) for meth in ("GET", "POST")) < 2:
        for method in ("GET", "GET", "POST", "POST"):
            sent.append((method, send(method)))
    time.sleep(0.3)  # nginx writes a line when the request ends
    at_hung, at_other = logged(hung), logged(other)
    assert {s for s, _ in at_hung} == {"444"} and {s for s, _ in at_other} == {"200"}
    for method in ("GET", "POST"):
        hung_up = sum(1 for _, m in at_hung if m == method)
        answered = sum(1 for _, m in at_other if m == method)
        codes = [code for m, code in sent if m == method]
        assert hung_up >= 1, (method, sent)
        if method == "GET" and retries == "safe":
            # every GET answered, by the other cluster; each hung-up one was sent there again
            assert codes == ["200"] * len(codes) and answered == len(codes), (sent, at_hung, at_other)
        else:
            # sent once: each one the cluster hung up on is the client's 502
            assert codes.count("502") == hung_up and codes.count("200") == answered == len(codes) - hung_up, \
                (method, sent, at_hung, at_other)
