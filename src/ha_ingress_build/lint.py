"""Check rendered node trees with the real tools.

For every node under <out>/nodes/: `haproxy -c`, `keepalived -t` (in a private
mount + network namespace where the files sit at their real paths and the
node's interfaces exist), `shellcheck` on shell scripts, and
`systemd-analyze verify` on the units our drop-ins change. A failure carries
the tool's own message and the node it was for.

`roots` adds other Debian releases (debootstrap'd by release_roots.py): the same files
checked by that release's haproxy and keepalived, to bracket the EL targets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ha_ingress_build.node_overlay import in_view_argv
from ha_ingress_proxy import layout
from ha_ingress_proxy.subproc import require_tool, run
from ha_ingress_proxy.errors import CommandError, UserError

# haproxy -c needs the variable to exist; the real password never reaches the build.
LINT_ENV = {"HAPROXY_STATS_PASSWORD": "lint-placeholder-not-a-secret"}
UNITS = ("haproxy.service", "keepalived.service", Path(layout.AGENT_UNIT).name, Path(layout.METRICS_UNIT).name)


@dataclass(frozen=True)
class Finding:
    node: str
    check: str
    message: str

    def line(self) -> str:
        return f"{self.node}: {self.check}: {self.message}"


def node_dirs(out_dir: Path) -> list[Path]:
    nodes = Path(out_dir) / "nodes"
    dirs = sorted(p for p in nodes.iterdir() if p.is_dir()) if nodes.is_dir() else []
    if not dirs:
        raise UserError(f"{nodes}: no rendered nodes here; run `invoke render` first")
    return dirs


def _interfaces(tree: Path) -> list[str]:
    site = json.loads((tree / layout.SITE_MODEL).read_text())
    node = next(n for n in site["nodes"] if n["name"] == tree.name)
    return [node["interface"]]


def _check(findings: list[Finding], node: str, check: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    try:
        run(argv, env=env, context=f"{node}: {check}")
    except CommandError as exc:
        # The tool's own words; the namespace wrapper around it is noise here.
        findings.append(Finding(node, check, f"exit {exc.returncode}: " + "\n".join(exc.output.strip().splitlines())))


# Our units' ExecStart= is the console script the package installs; the rendered
# tree holds no program (rendering stays pure), so on a lint host without the package
# installed systemd-analyze says exactly this, and exits 1 for it. It is tolerated only
# as that exact line and only while the file is really absent; any other word fails.
AGENT_EXEC = layout.shown(layout.LAUNCHER)
OWN_UNITS = (Path(layout.AGENT_UNIT).name, Path(layout.METRICS_UNIT).name)
EXEC_ABSENT = tuple(f"{unit}: Command {AGENT_EXEC} is not executable: No such file or directory" for unit in OWN_UNITS)
AGENT_EXEC_ABSENT = EXEC_ABSENT[0]


def _check_units(findings: list[Finding], node: str, tree: Path) -> None:
    """systemd-analyze verify exits 0 on bad drop-in lines ("ignoring"); any word about our files fails."""
    proc = run(in_view_argv(tree, ["systemd-analyze", "verify", *UNITS]), check=False)
    lines = (proc.stdout or "").splitlines()
    if not os.path.exists(AGENT_EXEC) and any(line in EXEC_ABSENT for line in lines):
        lines = [line for line in lines if line not in EXEC_ABSENT]
        if proc.returncode == 1 and not lines:
            return
    ours = [line for line in lines if "ha-ingress-proxy" in line]
    if proc.returncode != 0 or ours:
        findings.append(Finding(node, "systemd-analyze verify", f"exit {proc.returncode}: " + "\n".join(ours or proc.stdout.splitlines())))


# `haproxy -vv` of a build with the exporter (USE_PROMEX, haproxy 2.0+) says
# "Built with the Prometheus exporter as a service"; some EL builds lack it.
PROMEX_MARK = "Prometheus exporter"


def _check_promex(findings: list[Finding], node: str, tree: Path, root: Path) -> None:
    """The config uses haproxy's Prometheus exporter: does this haproxy have it? Say so plainly if not."""
    cfg = tree / layout.HAPROXY_CFG
    if "prometheus-exporter" not in cfg.read_text():
        return
    proc = run(in_view_argv(tree, ["haproxy", "-vv"], root=root, interfaces=[]), check=False)
    if proc.returncode != 0:
        findings.append(Finding(node, "haproxy -vv", f"exit {proc.returncode}: " + " ".join((proc.stdout or "").split())[:300]))
        return
    problem = promex_problem(proc.stdout or "")
    if problem:
        findings.append(Finding(node, "haproxy exporter", problem))


def promex_problem(vv: str) -> str | None:
    """None when `haproxy -vv` output shows the Prometheus exporter; else the one line to tell the user."""
    if PROMEX_MARK in vv:
        return None
    version = next((line.strip() for line in vv.splitlines() if line.startswith(("HA-Proxy version", "HAProxy version"))),
                   "this haproxy")
    return (f"{version} is built without the Prometheus exporter (`haproxy -vv` has no '{PROMEX_MARK}'), which "
            "haproxy.cfg's `frontend metrics` uses: set `metrics: {haproxy: false}` in the inventory for this target, "
            "or install a haproxy built with USE_PROMEX=1 (`ha-ingress-proxy metrics`, the VRRP/node metrics, does "
            "not depend on it)")


def lint_node(tree: Path, root: Path = Path("/"), label: str = "host") -> list[Finding]:
    """Every check for one rendered node; returns the failures (empty when clean)."""
    node = tree.name if label == "host" else f"{tree.name} [{label}]"
    findings: list[Finding] = []
    cfg = layout.shown(layout.HAPROXY_CFG)
    kcfg = layout.shown(layout.KEEPALIVED_CONF)
    _check_promex(findings, node, tree, root)
    _check(findings, node, "haproxy -c", in_view_argv(tree, ["haproxy", "-c", "-f", cfg], root=root, interfaces=[]), LINT_ENV)
    _check(
        findings,
        node,
        "keepalived -t",
        in_view_argv(tree, ["keepalived", "-t", "-l", f"--use-file={kcfg}"], root=root, interfaces=_interfaces(tree)),
    )
    if label != "host":
        return findings
    scripts = sorted(p for p in tree.rglob("*") if p.is_file() and p.stat().st_mode & 0o111)  # modes from the layout
    if scripts:
        require_tool("shellcheck", "shellcheck")
        _check(findings, node, "shellcheck", ["shellcheck", "--shell=sh", *map(str, scripts)])
    require_tool("systemd-analyze", "systemd")
    _check_units(findings, node, tree)
    return findings


def lint(out_dir: Path, roots: dict[str, Path] | None = None) -> list[Finding]:
    """Lint every rendered node on the host's tools, then on each extra root."""
    if os.geteuid() != 0:
        raise UserError("lint needs root: it checks the files at their real paths in a private mount namespace")
    require_tool("haproxy", "haproxy")
    require_tool("keepalived", "keepalived")
    require_tool("unshare", "util-linux")
    findings: list[Finding] = []
    for tree in node_dirs(out_dir):
        findings += lint_node(tree)
        for label, root in sorted((roots or {}).items()):
            findings += lint_node(tree, root, label)
    return findings
