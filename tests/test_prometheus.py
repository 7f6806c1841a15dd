"""The shipped alert rules with the real promtool (Debian's prometheus package).

- `promtool check rules` on docs/prometheus/alerts.yml;
- `promtool test rules` on docs/prometheus/alerts_test.yml: every alert has a case where it fires and one
  where it has cleared, and a check just before its `for` has elapsed;
- the unit tests can fail: shortening any alert's `for`, or breaking its expression, fails them;
- every alert has a runbook, and every runbook the tests expect is the one in alerts.yml.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

PROM = ROOT / "docs" / "prometheus"
ALERTS = [r for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]]
WANTED = ("VipNoMaster", "VipDualMaster", "ProxyNodeDown", "HaproxyDown", "KeepalivedDown", "ClusterDown",
          "AllClustersDown", "HighErrorRate", "BackendSessionsNearLimit", "BgpVipNotAnnounced", "BgpPeerDown")


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    if not tool:
        pytest.fail("promtool not found: install Debian's prometheus package (./invokew does)")
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rules_check():
    proc = promtool("check", "rules", "alerts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(WANTED)} rules found" in proc.stdout


def test_every_wanted_alert_is_there_with_a_runbook():
    assert sorted(r["alert"] for r in ALERTS) == sorted(WANTED)
    for r in ALERTS:
        assert r["annotations"]["runbook"].strip() and r["annotations"]["summary"].strip(), r["alert"]
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert r.get("for"), r["alert"]


def test_rules_unit_tests_pass():
    proc = promtool("test", "rules", "alerts_test.yml")
    print(proc.stdout + proc.stderr)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def _seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    total, num = 0, ""
    for ch in text:
        if ch.isdigit():
            num += ch
        else:
            total += int(num) * units[ch]
            num = ""
    return total


def test_unit_tests_cover_fire_clear_and_for_of_every_alert():
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    by_alert: dict[str, list[tuple[int, bool]]] = {}
    runbooks = {r["alert"]: r["annotations"]["runbook"] for r in ALERTS}
    for t in tests:
        for case in t["alert_rule_test"]:
            by_alert.setdefault(case["alertname"], []).append((_seconds(case["eval_time"]), bool(case["exp_alerts"])))
            for exp in case["exp_alerts"]:
                assert exp["exp_annotations"]["runbook"] == runbooks[case["alertname"]]
    for name in WANTED:
        cases = sorted(by_alert.get(name, []))
        fired = [t for t, f in cases if f]
        assert fired, f"{name}: no case where it fires"
        assert any(t > fired[0] and not f for t, f in cases), f"{name}: no case where it has cleared"
        assert any(t < fired[0] and not f for t, f in cases), f"{name}: no quiet case before it fires (its `for`)"


@pytest.mark.parametrize("alert", WANTED)
def test_unit_tests_fail_when_an_alert_fires_too_early(alert, tmp_path):
    """Halving one alert's `for` must break its unit test: the `for` durations are really tested."""
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    for r in doc["groups"][0]["rules"]:
        if r["alert"] == alert:
            r["for"] = f"{_seconds(r['for']) // 2}s"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc))
    shutil.copy(PROM / "alerts_test.yml", tmp_path)
    proc = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"alertname: {alert}," in out, out


@pytest.mark.parametrize("alert", WANTED)
def test_unit_tests_fail_when_an_alert_never_fires(alert, tmp_path):
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    for r in doc["groups"][0]["rules"]:
        if r["alert"] == alert:
            r["expr"] = f"({r['expr']}) and on() vector(0) > 1"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc))
    shutil.copy(PROM / "alerts_test.yml", tmp_path)
    proc = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"alertname: {alert}," in out, out


def test_example_scrape_config_is_valid_and_uses_the_rules():
    proc = promtool("check", "config", "scrape.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = {j["job_name"] for j in yaml.safe_load((PROM / "scrape.yml").read_text())["scrape_configs"]}
    assert jobs == {"ha-ingress-node", "ha-ingress-haproxy"}
    for r in ALERTS:
        assert 'job="ha-ingress-node"' in r["expr"] or 'job="ha-ingress-haproxy"' in r["expr"], r["alert"]
