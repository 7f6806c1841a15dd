"""The rendered examples against the real haproxy, keepalived, shellcheck and systemd-analyze."""

from __future__ import annotations

from pathlib import Path

import pytest

from ha_ingress_build import lint
from ha_ingress_proxy import inventory, render
from ha_ingress_proxy.errors import UserError

from .conftest import EXAMPLES, MODES, need_root_and

pytestmark = pytest.mark.binaries


@pytest.fixture(autouse=True)
def _tools():
    need_root_and("haproxy", "keepalived", "shellcheck", "systemd-analyze", "unshare")


@pytest.mark.parametrize("mode", (*MODES, "ingress-nginx"))
def test_examples_lint_clean(mode, tmp_path):
    render.write_site(inventory.load(EXAMPLES / f"{mode}.yaml"), tmp_path)
    assert [f.line() for f in lint.lint(tmp_path)] == []


def _rendered(tmp_path: Path) -> Path:
    render.write_site(inventory.load(EXAMPLES / "active-active.yaml"), tmp_path)
    return tmp_path / "nodes" / "proxy-1"


def test_broken_haproxy_config_is_reported_with_node_and_tool_message(tmp_path):
    cfg = _rendered(tmp_path) / "etc/ha-ingress-proxy/haproxy.cfg"
    cfg.write_text(cfg.read_text().replace("balance roundrobin", "balance no-such-algorithm", 1))
    findings = lint.lint(tmp_path)
    assert [(f.node, f.check) for f in findings] == [("proxy-1", "haproxy -c")]
    assert findings[0].message.startswith("exit 1: ")
    assert "balance only supports" in findings[0].message and "unshare" not in findings[0].message


def test_broken_keepalived_config_is_reported(tmp_path):
    cfg = _rendered(tmp_path) / "etc/ha-ingress-proxy/keepalived.conf"
    cfg.write_text(cfg.read_text().replace("interface ens192", "interface ens999", 1))
    findings = lint.lint(tmp_path)
    assert [(f.node, f.check) for f in findings] == [("proxy-1", "keepalived -t")]
    assert "ens999" in findings[0].message


def test_broken_script_and_dropin_are_reported(tmp_path):
    node = _rendered(tmp_path)
    script = node / "usr/libexec/keepalived/ha-ingress-proxy-check-haproxy"
    script.write_text(script.read_text() + "\nif [ $undefined = 1 ]; then echo; fi\n")
    dropin = node / "usr/lib/systemd/system/haproxy.service.d/ha-ingress-proxy.conf"
    dropin.write_text(dropin.read_text() + "\n[Service]\nRestart=sometimes-maybe\n")
    findings = {f.check: f.message for f in lint.lint(tmp_path)}
    assert sorted(findings) == ["shellcheck", "systemd-analyze verify"]
    assert "sometimes-maybe" in findings["systemd-analyze verify"] and "SC2086" in findings["shellcheck"]


def test_no_rendered_nodes_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no rendered nodes here; run `invoke render` first"):
        lint.lint(tmp_path)


def test_check_script_follows_haproxy(tmp_path):
    """The VRRP check: fails without a pid file, with a stale pid, succeeds for a live haproxy."""
    import os
    import signal
    import time

    from ha_ingress_proxy.subproc import run, start

    script = _rendered(tmp_path) / "usr/libexec/keepalived/ha-ingress-proxy-check-haproxy"
    pidfile = tmp_path / "haproxy.pid"
    assert run(["sh", str(script), str(pidfile)], check=False).returncode == 1
    pidfile.write_text("999999999\n")
    assert run(["sh", str(script), str(pidfile)], check=False).returncode == 1
    cfg = tmp_path / "h.cfg"
    cfg.write_text("global\n    pidfile %s\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n"
                   "listen x\n    bind 127.0.0.1:18999\n" % pidfile)
    pidfile.unlink()
    proc = start(["haproxy", "-Ws", "-f", str(cfg)])
    try:
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        assert run(["sh", str(script), str(pidfile)], check=False).returncode == 0
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert run(["sh", str(script), str(pidfile)], check=False).returncode == 1


def test_haproxy_exporter_is_detected_and_its_absence_named(tmp_path):
    """This host's haproxy (Debian 12) has the exporter; a build without it gets one plain finding.

    No haproxy built without the exporter exists here, so that case feeds promex_problem the
    head of such a build's `haproxy -vv` (haproxy 1.8, as EL8 ships it): a recorded stand-in.
    """
    from ha_ingress_proxy.subproc import run

    assert lint.promex_problem(run(["haproxy", "-vv"]).stdout) is None
    el8_like = "HA-Proxy version 1.8.27-493ce0b 2020/11/06\nCopyright 2000-2020 Willy Tarreau\n\nBuild options :\n  TARGET  = linux2628\n"
    problem = lint.promex_problem(el8_like)
    assert problem.startswith("HA-Proxy version 1.8.27-493ce0b 2020/11/06 is built without the Prometheus exporter")
    assert "metrics: {haproxy: false}" in problem


def test_metrics_frontend_lints_and_can_be_switched_off(tmp_path):
    text = (EXAMPLES / "active-active.yaml").read_text() + "metrics: {bind: node, haproxy: false}\n"
    site = inventory.validate(inventory.parse_yaml(text, "x.yaml"), "x.yaml")
    render.write_site(site, tmp_path)
    cfg = (tmp_path / "nodes/proxy-1/etc/ha-ingress-proxy/haproxy.cfg").read_text()
    assert "prometheus-exporter" not in cfg
    assert [f.line() for f in lint.lint(tmp_path)] == []
    site = inventory.validate(inventory.parse_yaml(text.replace("haproxy: false", "haproxy: true"), "x.yaml"), "x.yaml")
    render.write_site(site, tmp_path)
    cfg = (tmp_path / "nodes/proxy-2/etc/ha-ingress-proxy/haproxy.cfg").read_text()
    assert "    bind 192.168.1.11:9101 ssl crt /etc/ha-ingress-proxy/stats.pem ssl-min-ver TLSv1.2\n" in cfg  # TLS by default, as stats
    assert "use-service prometheus-exporter" in cfg
    assert [f.line() for f in lint.lint(tmp_path)] == []


def test_broken_frr_config_is_reported_by_frrs_parser(tmp_path):
    """mode: bgp: lint runs FRR's own parser (vtysh --dryrun) on frr.conf, and keepalived -t not at all."""
    need_root_and("vtysh")
    render.write_site(inventory.load(EXAMPLES / "bgp.yaml"), tmp_path)
    conf = tmp_path / "nodes" / "proxy-2" / "etc/frr/hip/frr.conf"
    conf.write_text(conf.read_text().replace("remote-as", "remote-ass", 1))
    findings = lint.lint(tmp_path)
    assert [(f.node, f.check) for f in findings] == [("proxy-2", "vtysh --dryrun")]
    assert "remote-ass" in findings[0].message


@pytest.mark.parametrize("transport", ("udp", "unix", "ring"))
def test_log_transports_lint_clean_and_rsyslog_checks_the_dropin(transport, tmp_path):
    """Each haproxy.log_transport passes haproxy -c and rsyslogd -N1; a broken drop-in is named."""
    from dataclasses import replace

    need_root_and("rsyslogd")
    site = inventory.load(EXAMPLES / "active-active.yaml")
    render.write_site(replace(site, haproxy=replace(site.haproxy, log_transport=transport)), tmp_path)
    assert [f.line() for f in lint.lint(tmp_path)] == []
    dropin = tmp_path / "nodes" / "proxy-1" / "etc/rsyslog.d/49-ha-ingress-proxy.conf"
    dropin.write_text(dropin.read_text().replace('ruleset(name="ha_ingress_proxy") {', 'ruleset(name="ha_ingress_proxy" {', 1))
    findings = lint.lint(tmp_path)
    assert [(f.node, f.check) for f in findings] == [("proxy-1", "rsyslogd -N1")]
