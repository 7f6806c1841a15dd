"""Check rendered node trees with the real tools.

For every node under <out>/nodes/: `haproxy -c`, `keepalived -t` (in a private
mount + network namespace where the files sit at their real paths and the
node's interfaces exist), `rsyslogd -N1` on haproxy's log drop-in, `shellcheck` on shell scripts, and
`systemd-analyze verify` on the units our drop-ins change. A failure carries
the tool's own message and the node it was for.

`roots` adds other Debian releases (debootstrap'd by release_roots.py): the same files
checked by that release's haproxy and keepalived, to bracket the EL targets.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ha_ingress_build.node_overlay import in_view_argv, sysusers, users_layer
from ha_ingress_proxy import layout
from ha_ingress_proxy.subproc import require_tool, run
from ha_ingress_proxy.errors import CommandError, UserError

# haproxy -c needs the variable to exist; the real password never reaches the build.
LINT_ENV = {"HAPROXY_STATS_PASSWORD": "lint-placeholder-not-a-secret"}
UNITS = ("haproxy.service", "keepalived.service", Path(layout.AGENT_UNIT).name, Path(layout.METRICS_UNIT).name,
         Path(layout.FIREWALL_UNIT).name)


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
OWN_UNITS = (Path(layout.AGENT_UNIT).name, Path(layout.METRICS_UNIT).name, Path(layout.BGP_GATE_UNIT).name,
             Path(layout.HAPROXY_WATCH_UNIT).name)
EXEC_ABSENT = tuple(f"{unit}: Command {AGENT_EXEC} is not executable: No such file or directory" for unit in OWN_UNITS)
AGENT_EXEC_ABSENT = EXEC_ABSENT[0]


def _check_units(findings: list[Finding], node: str, tree: Path) -> None:
    """systemd-analyze verify exits 0 on bad drop-in lines ("ignoring"); any word about our files fails."""
    units = [*UNITS, "frr.service", Path(layout.BGP_GATE_UNIT).name] if (tree / layout.FRR_CONF).exists() else list(UNITS)
    units += [Path(layout.HAPROXY_WATCH_UNIT).name] if (tree / layout.HAPROXY_WATCH_UNIT).exists() else []
    proc = run(in_view_argv(tree, ["systemd-analyze", "verify", *units]), check=False)
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


def _stats_cert(tree: Path) -> str:
    """The certificate path haproxy.cfg's stats bind names (`ssl crt PATH`), or ""."""
    for line in (tree / layout.HAPROXY_CFG).read_text().splitlines():
        words = line.split()
        if words[:1] == ["bind"] and "crt" in words:
            return words[words.index("crt") + 1]
    return ""


def _placeholder_cert(tree: Path, extra: Path) -> None:
    """A throwaway self-signed certificate at the path haproxy.cfg names, in an extra
    overlay layer (never in the rendered tree, which packages are built from)."""
    from ha_ingress_proxy.agent.stats_cert import make_self_signed

    cert = _stats_cert(tree)
    if cert:
        make_self_signed(extra, cert.lstrip("/"), "lint placeholder", "127.0.0.1")


def _check_nft(findings: list[Finding], node: str, tree: Path) -> None:
    """The packet filter, checked by the real nft against a kernel: in a fresh network namespace."""
    path = tree / layout.FIREWALL_NFT
    if not path.is_file():
        findings.append(Finding(node, "nft -c", f"{layout.shown(layout.FIREWALL_NFT)} is missing"))
        return
    require_tool("nft", "nftables")
    _check(findings, node, "nft -c", ["unshare", "--net", "nft", "-c", "-f", str(path)])


def _check_rsyslog(findings: list[Finding], node: str, tree: Path) -> None:
    """rsyslog's own config check (`rsyslogd -N1`) on the rendered drop-in, included from a stand-in
    for the distribution's rsyslog.conf that loads imuxsock as EL's does (without the system socket)."""
    if not (tree / layout.RSYSLOG).is_file():
        return
    require_tool("rsyslogd", "rsyslog")
    with tempfile.TemporaryDirectory(prefix="hip-lint-rsyslog-") as tmp:
        main = Path(tmp) / "rsyslog.conf"
        main.write_text(f'module(load="imuxsock" SysSock.Use="off")\ninclude(file="{layout.shown(layout.RSYSLOG)}")\n')
        _check(findings, node, "rsyslogd -N1", in_view_argv(tree, ["rsyslogd", "-N1", "-f", str(main)], interfaces=[]))


# keepalived 2.2.0-2.2.7 kill themselves with SIGTERM in config-test mode (-t) right after
# checking a script as a non-root script_user: lib/notify.c compares getppid() with the
# main pid, which only holds in the daemon's own children (fixed in 2.2.8, which skips
# the check under -t). The daemon itself is not affected. On those versions lint checks
# the config again with script_user's name resolving to uid 0 in the view's passwd, so
# every other line is still checked; the rendered file is the same.
_KEEPALIVED_TEST_SIGTERM = re.compile(r"Keepalived v2\.2\.[0-7]\b")


def _check_keepalived(findings: list[Finding], node: str, tree: Path, root: Path, extra: Path) -> None:
    argv = ["keepalived", "-t", "-l", f"--use-file={layout.shown(layout.KEEPALIVED_CONF)}"]
    proc = run(in_view_argv(tree, argv, root=root, interfaces=_interfaces(tree), extra=extra), check=False)
    if proc.returncode in (-15, 143) and (sysusers(tree) or sysusers(root)):
        version = run(in_view_argv(tree, ["keepalived", "--version"], root=root), check=False).stdout or ""
        if _KEEPALIVED_TEST_SIGTERM.search(version):
            users_layer(tree, extra, root, uid=0)
            proc = run(in_view_argv(tree, argv, root=root, interfaces=_interfaces(tree), extra=extra), check=False)
    if proc.returncode != 0:
        findings.append(Finding(node, "keepalived -t", f"exit {proc.returncode}: " + "\n".join((proc.stdout or "").strip().splitlines())))


def lint_node(tree: Path, root: Path = Path("/"), label: str = "host") -> list[Finding]:
    """Every check for one rendered node; returns the failures (empty when clean)."""
    node = tree.name if label == "host" else f"{tree.name} [{label}]"
    findings: list[Finding] = []
    cfg = layout.shown(layout.HAPROXY_CFG)
    _check_promex(findings, node, tree, root)
    with tempfile.TemporaryDirectory(prefix="hip-lint-") as tmp:
        extra = Path(tmp)
        _placeholder_cert(tree, extra)
        users_layer(tree, extra, root)  # keepalived's script_user, as the package's sysusers.d creates it
        haproxy_argv = in_view_argv(tree, ["haproxy", "-c", "-f", cfg], root=root, interfaces=[], extra=extra)
        _check(findings, node, "haproxy -c", haproxy_argv, LINT_ENV)
        if (tree / layout.KEEPALIVED_CONF).exists():  # mode: bgp has none
            _check_keepalived(findings, node, tree, root, extra)
    if (tree / layout.FRR_CONF).exists() and label == "host":
        # FRR's own parser, offline: every line through vtysh's command tree, no daemon needed
        require_tool("vtysh", "frr")
        _check(findings, node, "vtysh --dryrun", ["vtysh", "--dryrun", "-f", str(tree / layout.FRR_CONF)])
    if label != "host":
        return findings
    _check_nft(findings, node, tree)
    _check_rsyslog(findings, node, tree)
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
