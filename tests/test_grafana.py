"""docs/grafana/ha-ingress-proxy.json: valid JSON in Grafana's dashboard shape, and every PromQL parses.

Grafana itself is not run here. What is checked: the JSON loads; the top-level keys Grafana's
dashboard model requires are there with the right types; every panel has a unique id, a
gridPos inside the 24-column grid, a known panel type, the Prometheus datasource input and
targets with unique refIds; and every `expr` is parsed by the real promtool (as a recording
rule in a throwaway rules file), so a typo in a query fails here, not in front of the ops team.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from .conftest import ROOT

DASHBOARD = ROOT / "docs" / "grafana" / "ha-ingress-proxy.json"
PANEL_TYPES = {"timeseries", "stat", "gauge", "table", "state-timeline", "bargauge", "text", "row"}


def _dash() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_shape():
    d = _dash()
    for key, kind in (("title", str), ("uid", str), ("panels", list), ("schemaVersion", int), ("time", dict),
                      ("templating", dict), ("annotations", dict), ("tags", list), ("editable", bool)):
        assert isinstance(d.get(key), kind), key
    assert d["__inputs"] == [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                              "pluginId": "prometheus", "pluginName": "Prometheus"}]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert p["type"] in PANEL_TYPES, p["title"]
        g = p["gridPos"]
        assert all(isinstance(g[k], int) and g[k] >= 0 for k in ("x", "y", "w", "h")) and g["x"] + g["w"] <= 24, p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]
    titles = " ".join(p["title"] for p in d["panels"])
    assert "VIP map" in titles and "per cluster" in titles and "maxconn" in titles


def test_every_query_parses_with_promtool(tmp_path):
    tool = shutil.which("promtool")
    if not tool:
        pytest.fail("promtool not found: install Debian's prometheus package (./invokew does)")
    exprs = [t["expr"] for p in _dash()["panels"] for t in p["targets"]]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "q.yml").write_text(yaml.safe_dump(rules))
    proc = subprocess.run([tool, "check", "rules", str(tmp_path / "q.yml")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout
    # and the check can fail: a broken query is refused
    (tmp_path / "bad.yml").write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (server (up)"}]}]}))
    assert subprocess.run([tool, "check", "rules", str(tmp_path / "bad.yml")], capture_output=True, timeout=60).returncode != 0
