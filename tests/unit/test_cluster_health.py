"""Per-cluster health checks and PROXY protocol: the loader's exact refusals, the plan's server lines, the warning."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from ha_ingress_proxy import inventory, plan, render
from ha_ingress_proxy.inventory import InventoryError

from ..conftest import EXAMPLES


def load(tmp_path, fn=None, name="ingress-nginx"):
    data = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    if fn:
        fn(data)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return inventory.load(path)


def refusals(tmp_path, fn, name="ingress-nginx"):
    with pytest.raises(InventoryError) as info:
        load(tmp_path, fn, name)
    return [line.replace(str(tmp_path) + "/", "") for line in info.value.lines]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["health"].update(type="grpc"), "health.type: 'grpc' is not one of: tcp, http"),
        (lambda d: d["health"].update(path="/healthz?x y"), "health.path: '/healthz?x y' is not a URL path like /healthz"),
        (lambda d: d["health"].update(status=700), "health.status: 700 is not an integer in 100-599"),
        (lambda d: d["health"].update(host="in gress"), "health.host: 'in gress' is not a host name ([A-Za-z0-9.-], at most 253)"),
        (lambda d: d["health"].update(fastinter="fast"), "health.fastinter: 'fast' is not a haproxy duration like 2s or 500ms"),
        (lambda d: d["health"].update(slowstart="-1"), "health.slowstart: '-1' is not 0 or a haproxy duration like 10s"),
        (lambda d: d["health"].update(error_limit=0), "health.error_limit: 0 is not an integer in 1-100"),
        (lambda d: d["clusters"][1].update(health={"path": "/ready"}),
         "clusters[1].health.path: set it in health.path: haproxy sends one check request per listener, the same to every cluster"),
        (lambda d: d["clusters"][0].update(health={"port": 70000}), "clusters[0].health.port: 70000 is not an integer in 1-65535"),
        (lambda d: d["clusters"][0].update(health={"intr": "1s"}),
         "clusters[0].health.intr: unknown key (known: downinter, error_limit, fall, fastinter, inter, observe, port, rise, slowstart, tls)"),
        (lambda d: d["clusters"][0].update(health="fast"), "clusters[0].health: 'fast' is not a mapping"),
        (lambda d: d["clusters"][0].update(proxy_protocol="v2"), "clusters[0].proxy_protocol: 'v2' is not true, false or a list of service names"),
        (lambda d: d["clusters"][0].update(proxy_protocol=["https", "https"]), "clusters[0].proxy_protocol: ['https', 'https'] names a service twice"),
        (lambda d: d["clusters"][0].update(proxy_protocol=["tls"]), "clusters[0].proxy_protocol[0]: 'tls' is not a service name (known: http, https)"),
    ],
)
def test_refusals(tmp_path, change, expected):
    assert refusals(tmp_path, change) == [f"site.yaml: {expected}"]


def servers(site, node="proxy-1"):
    view = plan.plan(site, node).haproxy
    return {l.name: {name: (addr, opts) for name, addr, _, opts in l.servers} for l in view.listeners}, view


def test_default_is_a_tcp_check_on_the_first_service_that_the_others_track(tmp_path):
    site = load(tmp_path, name="active-active")
    srv, view = servers(site)
    assert srv["http"]["k8s-1"] == ("192.168.1.4:80", "check inter 1s fastinter 250ms downinter 1s rise 5 fall 2 "
                                    "observe layer4 error-limit 5 on-error mark-down slowstart 10s")
    assert srv["https"]["k8s-1"] == ("192.168.1.4:443", "track http/k8s-1 slowstart 10s")
    assert [l.check_lines for l in view.listeners] == [(), ()]
    assert plan.warnings(site) == []


def test_ingress_nginx_example_checks_healthz_on_10254_and_sends_proxy_v2_on_both(tmp_path):
    site = load(tmp_path)
    srv, view = servers(site)
    for cl in ("k8s-1", "k8s-2"):
        assert srv["http"][cl][1].startswith("check port 10254 inter 1s")
        assert "check-send-proxy" not in srv["http"][cl][1]  # 10254 expects no PROXY header
        assert srv["http"][cl][1].endswith("send-proxy-v2")
        assert srv["https"][cl][1] == f"track http/{cl} slowstart 10s send-proxy-v2"
    assert view.listeners[0].check_lines == ("option httpchk", "http-check send meth GET uri /healthz ver HTTP/1.0",
                                             "http-check expect status 200")
    assert plan.warnings(site) == []
    cfg = render.render_node(site, "proxy-1")["etc/ha-ingress-proxy/haproxy.cfg"].content.decode()
    assert "    option redispatch 1\n" in cfg and "observe layer7" not in cfg


@pytest.mark.parametrize("haproxy, expected", [(None, "200ms"), ({"timeout_connect": "2s"}, "2s")])
def test_connect_timeout_keeps_the_turn_around_after_a_refused_connection_short(tmp_path, haproxy, expected):
    """A refused connection (RST) to a cluster that is already marked down, with one cluster left in
    rotation, is retried only after min(timeout connect, 1 s) (haproxy's turn-around, back_handle_st_cer):
    the default must be well under 1 s so that pause stays shorter than a client's patience
    (docs/clusters.md), and the inventory key still sets it (a cluster a WAN away)."""
    site = load(tmp_path, (lambda d: d.update(haproxy=haproxy)) if haproxy else None)
    cfg = render.render_node(site, "proxy-1")["etc/ha-ingress-proxy/haproxy.cfg"].content.decode()
    defaults = cfg[cfg.index("\ndefaults\n"):cfg.index("\nlisten ")]
    assert re.findall(r"^    timeout connect (\S+)$", defaults, re.M) == [expected]
    assert "    retries 3\n" in defaults and "    option redispatch 1\n" in defaults
    assert "timeout connect" not in cfg[cfg.index("\nlisten "):cfg.index("\nbackend hip_drain")]  # no listener overrides it


def test_per_cluster_override_tls_host_and_proxy_on_one_service(tmp_path):
    def change(d):
        d["health"].update(host="ingress.example.com", tls=True)
        d["clusters"][1].update(proxy_protocol=["https"], health={"inter": "2s", "observe": False, "slowstart": 0})
    site = load(tmp_path, change)
    srv, view = servers(site)
    assert srv["http"]["k8s-2"][1] == ("check port 10254 check-ssl verify none check-sni ingress.example.com "
                                       "inter 2s fastinter 250ms downinter 1s rise 5 fall 2")
    assert srv["https"]["k8s-2"][1] == "track http/k8s-2 send-proxy-v2"
    assert "hdr Host ingress.example.com" in view.listeners[0].check_lines[1]


def test_warns_when_the_check_targets_a_proxy_port(tmp_path):
    site = load(tmp_path, lambda d: d["health"].update(type="tcp", port=443))
    srv, _ = servers(site)
    assert "check port 443 check-send-proxy" in srv["http"]["k8s-1"][1]  # it speaks PROXY to a PROXY port
    warned = plan.warnings(site)
    assert [p for p, _ in warned] == ["clusters[0].proxy_protocol", "clusters[1].proxy_protocol"]
    assert "goes to 443, a PROXY-protocol port" in warned[0][1]


def test_site_model_round_trips_through_the_nodes_copy(tmp_path):
    site = load(tmp_path, lambda d: d["clusters"][1].update(proxy_protocol=["https"], health={"slowstart": 0}))
    assert inventory.validate(json.loads(json.dumps(inventory.to_dict(site))), "site.json") == site


@pytest.mark.parametrize("target, value, expected", [("el9", None, True), ("el9", "off", False), ("el8", None, False),
                                                     ("el10", "safe", True)])
def test_l7_retries_only_for_safe_methods_and_only_on_http_listeners(tmp_path, target, value, expected):
    """haproxy.l7_retries (unset: safe, but off on el8): `retry-on` on the HTTP listener with every other
    method than GET/HEAD/OPTIONS excluded; TCP passthrough never (nothing can be sent twice there)."""
    def change(d):
        d["target"] = target
        if value:
            d.setdefault("haproxy", {})["l7_retries"] = value
    site = load(tmp_path, change)
    cfg = render.render_node(site, "proxy-1")["etc/ha-ingress-proxy/haproxy.cfg"].content.decode()
    http = cfg[cfg.index("\nlisten http\n"):cfg.index("\nlisten https\n")]
    wanted = ["    retry-on conn-failure empty-response",
              "    http-request disable-l7-retry unless { method GET HEAD OPTIONS }"]
    assert [ln for ln in http.splitlines() if "retry" in ln and not ln.lstrip().startswith("#")] == (wanted if expected else [])
    assert cfg.count("retry-on") == (1 if expected else 0)  # the https (TCP) listener has none
    again = inventory.validate(json.loads(json.dumps(inventory.to_dict(site))), "site.json")  # the node's copy loads
    assert plan.l7_retries(again) == ("safe" if expected else "off")
