"""A real Prometheus (Debian's package) scraping a running lab, with the shipped alert rules.

It runs in the lab's client namespace (on the lab segment, nothing else) and
scrapes both endpoints of every node at the nodes' lab addresses: the node
exporter (`ha-ingress-proxy metrics`, started inside each node) and haproxy's
exporter. It listens on the client namespace's loopback only; queries go
through `ip netns exec <client> curl`.

The rules are docs/prometheus/alerts.yml. `rules_text(for_scale=...)` can
shorten every `for:` (expressions untouched) so the test suite stays short;
`invoke bench --alerts` measures with the shipped durations (scale 1).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from subprocess import DEVNULL, Popen

import yaml

from ha_ingress_lab.netns_lab import Lab, UpDown, client_address, stop_proc
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.inventory import Site
from ha_ingress_proxy.subproc import require_tool, run, start

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus" / "alerts.yml"
LISTEN = "127.0.0.1:9090"


def metrics_site(site: Site) -> Site:
    """The site with its metrics endpoints on the node addresses (the lab's Prometheus is off-node, in the
    client namespace): open to the client's address only, plain HTTP (`metrics.tls: false`, said explicitly,
    as an operator would; TLS on the exporter is tested in tests/agent/test_agent_metrics.py)."""
    client, _ = client_address(site)
    return replace(site, metrics=replace(site.metrics, bind="node", haproxy=True, tls=False, allow=(f"{client}/32",)))


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total, num, unit = 0.0, "", ""
    for ch in str(text) + " ":
        if ch.isdigit():
            if unit:
                total += int(num) * units[unit]
                num, unit = "", ""
            num += ch
        elif ch.isalpha():
            unit += ch
        elif num:
            total += int(num) * units[unit or "s"]
            num, unit = "", ""
    return total


def rules_text(for_scale: float = 1.0, for_floor: float = 1.0) -> tuple[str, dict[str, float]]:
    """The shipped rules, with every `for` times for_scale (at least for_floor s); and alert -> `for` seconds."""
    doc = yaml.safe_load(RULES.read_text())
    fors = {}
    for group in doc["groups"]:
        for rule in group["rules"]:
            secs = _seconds(rule.get("for", "0s"))
            if for_scale != 1.0:
                secs = max(for_floor, math.ceil(secs * for_scale))
                rule["for"] = f"{int(secs)}s"
            fors[rule["alert"]] = secs
    return yaml.safe_dump(doc, sort_keys=False), fors


@dataclass
class Alert:
    name: str
    labels: dict
    state: str  # pending | firing

    @property
    def key(self) -> tuple:
        return (self.name, tuple(sorted((k, v) for k, v in self.labels.items() if k not in ("alertname", "severity"))))


class Prometheus(UpDown):
    """`with Prometheus(lab, ...) as prom:` a Prometheus scraping the lab; stopped by PID at exit."""

    def __init__(self, lab: Lab, scrape: float = 1.0, evaluation: float = 1.0, for_scale: float = 1.0,
                 for_floor: float = 1.0) -> None:
        self.lab, self.scrape, self.evaluation, self.for_scale, self.for_floor = lab, scrape, evaluation, for_scale, for_floor
        self.dir = lab.workdir / "prometheus"
        self.proc: Popen | None = None
        self.fors: dict[str, float] = {}

    def config(self) -> dict:
        site = self.lab.site
        node_targets = [f"{n.address}:{site.metrics.node_port}" for n in site.nodes]
        haproxy_targets = [f"{n.address}:{site.metrics.haproxy_port}" for n in site.nodes]
        ms = lambda secs: f"{int(round(secs * 1000))}ms"  # noqa: E731 - Prometheus durations take no fractions
        timeout = ms(max(0.2, 0.8 * self.scrape))
        return {
            "global": {"scrape_interval": ms(self.scrape), "evaluation_interval": ms(self.evaluation),
                       "scrape_timeout": timeout},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "ha-ingress-node", "static_configs": [{"targets": node_targets}]},
                {"job_name": "ha-ingress-haproxy",
                 "static_configs": [{"targets": haproxy_targets, "labels": {"site": site.site}}]},
            ],
        }

    def up(self) -> None:
        require_tool("prometheus", "prometheus")
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        text, self.fors = rules_text(self.for_scale, self.for_floor)
        (self.dir / "alerts.yml").write_text(text)
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))
        run(["promtool", "check", "config", str(self.dir / "prometheus.yml")], context="lab prometheus config")
        ns = self.lab.members["client"].ns
        argv = ["ip", "netns", "exec", ns, "prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address={LISTEN}",
                "--storage.tsdb.retention.time=1h", "--log.level=warn"]
        with open(self.lab.workdir / "logs" / "client-prometheus.log", "ab") as log:
            self.proc = start(argv, stdout=log, stderr=log, stdin=DEVNULL)
        self.lab.extra.append(self.proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(f"lab prometheus exited ({self.proc.returncode}); see {self.lab.workdir / 'logs'}")
            if self._get("/-/ready") is not None:
                return
            time.sleep(0.3)
        raise UserError("lab prometheus not ready after 60 s")

    def down(self) -> None:
        if self.proc is not None:
            stop_proc(self.proc, 2.0)
            if self.proc in self.lab.extra:
                self.lab.extra.remove(self.proc)
            self.proc = None

    def _get(self, path: str) -> str | None:
        ns = self.lab.members["client"].ns
        proc = run(["ip", "netns", "exec", ns, "curl", "-sf", "-m", "2", f"http://{LISTEN}{path}"], check=False, timeout=10)
        return proc.stdout if proc.returncode == 0 else None

    def api(self, path: str) -> dict:
        text = self._get(path)
        if text is None:
            return {}
        try:
            return json.loads(text).get("data") or {}
        except ValueError:
            return {}

    def alerts(self) -> list[Alert]:
        data = self.api("/api/v1/alerts")
        return [Alert(a["labels"].get("alertname", "?"), a["labels"], a["state"]) for a in data.get("alerts") or []]

    def targets_up(self) -> dict[str, bool]:
        data = self.api("/api/v1/targets")
        return {f"{t['labels']['job']}/{t['labels']['instance']}": t["health"] == "up" for t in data.get("activeTargets") or []}

    def query(self, expr: str) -> list[dict]:
        from urllib.parse import quote

        return self.api(f"/api/v1/query?query={quote(expr)}").get("result") or []

    def wait_targets_up(self, timeout: float = 60) -> None:
        want = 2 * len(self.lab.site.nodes)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = self.targets_up()
            if len(up) == want and all(up.values()):
                return
            time.sleep(0.5)
        raise TimeoutError(f"lab prometheus: targets not all up after {timeout}s: {self.targets_up()}")
