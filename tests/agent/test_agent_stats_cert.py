"""The stats page's certificate on a node (issue 10 item 4): delivered root-only, or made self-signed at first boot.

Real openssl makes and reads the certificates; the fingerprint the agent reports
is compared with `openssl x509 -fingerprint -sha256`.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace

import pytest

from ha_ingress_proxy import cli
from ha_ingress_proxy.agent import stats_cert
from ha_ingress_proxy.subproc import run

from ..conftest import EXAMPLES
from .conftest import PASSWORD, NodeRoot

CERT = "etc/ha-ingress-proxy/stats.pem"


@pytest.fixture
def tls_root(tmp_path):
    from ha_ingress_proxy import inventory

    site = inventory.load(EXAMPLES / "active-passive.yaml")
    site = replace(site, stats=replace(site.stats, bind="node"))
    root = NodeRoot(tmp_path / "root", site=site)
    root.addresses = [("ens192", "192.168.1.9")]
    root.instance_data({"ha_ingress_node": "proxy-1", "ha_ingress_stats_password": PASSWORD}, mode=0o600, sensitive=True)
    return root


def _openssl_fingerprint(path) -> str:
    out = run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(path)]).stdout
    return out.strip().split("=", 1)[1]


def test_first_boot_makes_a_root_only_self_signed_cert_and_reports_its_fingerprint(tls_root, tmp_path, capsys):
    out = tls_root.apply()
    assert out.ok, out.state
    pem = tls_root.file(CERT)
    st = os.lstat(pem)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    text = pem.read_text()
    assert "BEGIN CERTIFICATE" in text and "PRIVATE KEY" in text
    fp = _openssl_fingerprint(pem)
    st = tls_root.state()
    assert (st["stats_cert"], st["stats_cert_source"], st["stats_cert_sha256"]) == ("/" + CERT, stats_cert.SELF_SIGNED, fp)
    cfg = tls_root.file("etc/ha-ingress-proxy/haproxy.cfg").read_text()
    assert "bind 192.168.1.9:8888 ssl crt /etc/ha-ingress-proxy/stats.pem" in cfg
    # the subjectAltName is the address the page is served on
    san = run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(pem)]).stdout
    assert "IP Address:192.168.1.9" in san
    # status shows it; no key material anywhere in what apply/status print or store
    ip = tmp_path / "ip.json"
    ip.write_text(json.dumps([{"ifname": "ens192", "addr_info": [{"family": "inet", "local": "192.168.1.9", "prefixlen": 24}]}]))
    capsys.readouterr()
    assert cli.main(["status", "--root", str(tls_root.path), "--ip-addr-json", str(ip)]) == 0
    human = capsys.readouterr().out
    assert f"stats     certificate SHA-256 {fp}" in human
    assert "stats     https on 192.168.1.9:8888, certificate /etc/ha-ingress-proxy/stats.pem (self-signed by the agent)" in human
    key_body = text.split("PRIVATE KEY-----", 1)[1].split("-----END", 1)[0].strip().splitlines()[0]
    assert key_body not in human and key_body not in tls_root.file("run/ha-ingress-proxy/state.json").read_text()


def test_second_boot_keeps_the_cert_and_still_says_self_signed(tls_root):
    assert tls_root.apply().ok
    before = tls_root.file(CERT).read_bytes()
    out = tls_root.apply()
    assert out.ok and tls_root.file(CERT).read_bytes() == before
    assert tls_root.state()["stats_cert_source"] == stats_cert.SELF_SIGNED


def test_a_delivered_cert_is_used_as_is(tls_root, tmp_path):
    pem = tls_root.file(CERT)
    stats_cert.make_self_signed(tmp_path, "delivered.pem", "ops-ca-issued", "192.168.1.9")
    pem.write_bytes((tmp_path / "delivered.pem").read_bytes())
    os.chmod(pem, 0o600)
    out = tls_root.apply()
    assert out.ok
    st = tls_root.state()
    assert (st["stats_cert"], st["stats_cert_source"], st["stats_cert_sha256"]) == ("/" + CERT, stats_cert.DELIVERED, _openssl_fingerprint(pem))
    assert pem.read_bytes() == (tmp_path / "delivered.pem").read_bytes()


@pytest.mark.parametrize(
    "content, mode, words",
    [
        ("good", 0o644, "mode 0644"),
        ("good", 0o640, "mode 0640"),
        ("cert-only", 0o600, "no PRIVATE KEY block"),
        ("key-only", 0o600, "no certificate in it"),
    ],
)
def test_a_bad_delivered_cert_is_refused_in_one_line_without_its_contents(tls_root, tmp_path, capsys, content, mode, words):
    stats_cert.make_self_signed(tmp_path, "src.pem", "x", "192.168.1.9")
    full = (tmp_path / "src.pem").read_text()
    cert_part = full.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    key_part = full[len(cert_part):]
    body = {"good": full, "cert-only": cert_part, "key-only": key_part}[content]
    pem = tls_root.file(CERT)
    pem.write_text(body)
    os.chmod(pem, mode)
    ip = tmp_path / "ip.json"
    ip.write_text(json.dumps([{"ifname": "ens192", "addr_info": [{"family": "inet", "local": "192.168.1.9", "prefixlen": 24}]}]))
    rc = cli.main(["apply", "--root", str(tls_root.path), "--ip-addr-json", str(ip)])
    err = capsys.readouterr().err
    assert rc == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "/etc/ha-ingress-proxy/stats.pem" in lines[0] and words in lines[0], lines
    assert not tls_root.file("etc/ha-ingress-proxy/keepalived.conf").exists()
    for secret_line in body.splitlines()[1:3]:
        assert secret_line not in err and secret_line not in tls_root.file("run/ha-ingress-proxy/state.json").read_text()


def test_loopback_stats_needs_no_cert(node_root):
    node_root.addresses = [("ens192", "192.168.1.9")]
    node_root.instance_data({"ha_ingress_node": "proxy-1", "ha_ingress_stats_password": PASSWORD}, mode=0o600, sensitive=True)
    assert node_root.apply().ok
    assert not node_root.file(CERT).exists()
    assert node_root.state()["stats_cert"] is None and node_root.state()["stats_bind"] == "127.0.0.1:8888"
