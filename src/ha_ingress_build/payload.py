"""Rendered node trees -> the one payload both packages (RPM and .deb) ship.

The payload is, generically (no file list here):

- every role-independent file of the rendered tree (everything but
  layout.ROLE_FILES), which must be byte-identical, with the same mode, on
  every node -- a package is per site, never per node;
- the Python package `ha_ingress_proxy` (the modules of layout.RUNTIME_MODULES
  and the templates, no bytecode: a .pyc built here would only fit this host's
  Python) in a private directory, layout.PYTHON_DIR, so the node does not
  depend on the distro's sitelib layout;
- a small launcher, layout.LAUNCHER, that puts that directory first on
  sys.path and calls ha_ingress_proxy.cli.main (both packages ship it as is);
- the role-dependent files as ghosts: owned (so erasing the package removes
  them) but not shipped; the boot-time agent writes them.

Site facts the maintainer scripts need (ports to open, VRRP peers) are read
from the site model in the payload, the same file the agent plans from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import ha_ingress_proxy
from ha_ingress_build.lint import LINT_ENV
from ha_ingress_proxy import __version__, layout
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.layout import NAME, PYTHON_DIR, ROLE_FILES, SITE_MODEL
from ha_ingress_proxy.render import File

PACKAGE_DIR = Path(ha_ingress_proxy.__file__).resolve().parent  # the node runtime

# A node path prefix -> (key, rpm macro expression). Longest prefix first: a
# file belongs to the first that matches. The RPM spec copies source dir
# tree/<key>/ to the macro's directory; a path under none of these is refused
# (add a row here and a %hip_copy line to rpm/ha-ingress-proxy.spec).
DIR_MACROS: tuple[tuple[str, str, str], ...] = (
    ("usr/lib/systemd/system-preset", "presetdir", "%{_presetdir}"),
    ("usr/lib/systemd/system", "unitdir", "%{_unitdir}"),
    ("usr/lib/sysctl.d", "sysctldir", "%{_sysctldir}"),
    ("usr/libexec", "libexecdir", "%{_libexecdir}"),
    ("usr/share", "datadir", "%{_datadir}"),
    ("usr/bin", "bindir", "%{_bindir}"),
    ("usr/lib", "prefixlib", "%{_prefix}/lib"),
    ("etc", "sysconfdir", "%{_sysconfdir}"),
)

LAUNCHER = f'''#!/usr/bin/python3 -I
"""ha-ingress-proxy: run the ha_ingress_proxy package from its private directory."""
import sys

# No bytecode next to the sources: the directory belongs to the package.
sys.dont_write_bytecode = True
sys.path.insert(0, "/{PYTHON_DIR}")

from ha_ingress_proxy.cli import main  # noqa: E402

sys.exit(main())
'''

# What a secret would look like if one slipped into a payload: lint's placeholder
# password in a rendered file, or an assignment of a password-like value
# anywhere ("...", "<password>" and "$VAR" in docs and code are not values).
PLACEHOLDER = re.compile(re.escape(LINT_ENV["HAPROXY_STATS_PASSWORD"]).encode())
ASSIGNMENT = re.compile("HAPROXY_STATS_PASSWORD".encode() + rb"""=["']?[A-Za-z0-9_+/=!@#%^&*-]{4,}""")


@dataclass(frozen=True)
class SiteFacts:
    """What the maintainer scripts act on: firewall ports, VRRP peers, SELinux port labels."""

    site: str
    tcp_ports: tuple[int, ...]  # every port haproxy binds (services + stats + its metrics)
    public_ports: tuple[int, ...]  # the ones to open to everyone in firewalld: the services only (never stats or metrics)
    peers: tuple[str, ...]  # node addresses: VRRP adverts come only from these
    stats_port: int = 0  # 0: stats on loopback, nothing to open; else open to stats_allow only
    stats_allow: tuple[str, ...] = ()  # inventory stats.allow (IPv4 CIDRs)
    metrics_ports: tuple[int, ...] = ()  # off loopback: open to metrics_allow only
    metrics_allow: tuple[str, ...] = ()  # inventory metrics.allow (IPv4 CIDRs)


@dataclass(frozen=True)
class Payload:
    version: str
    files: dict[str, File]  # node path (no leading /) -> content and mode
    ghosts: tuple[str, ...]  # node paths the agent writes; owned, not shipped
    facts: SiteFacts

    def config_files(self) -> list[str]:
        """Files an admin may edit: everything shipped under etc/ (the ghosts are rewritten by the agent)."""
        return [rel for rel in sorted(self.files) if rel.startswith("etc/")]

    def units(self) -> list[str]:
        """Our own systemd units (not drop-ins for the distro's): what %systemd_post & co. act on."""
        prefix = "usr/lib/systemd/system/"
        return sorted(
            rel[len(prefix):]
            for rel in self.files
            if rel.startswith(prefix) and "/" not in rel[len(prefix):]
            and rel.endswith((".service", ".timer", ".socket", ".path", ".target"))
        )

    def owned_dirs(self) -> list[str]:
        """Directories the package owns: ours by name, and unit drop-in dirs no distro package ships.

        Shared system directories (/etc/rsyslog.d, %{_unitdir}, /usr/libexec/keepalived ...) stay
        with their owners: the package only puts files in them.
        """
        dirs = set()
        for rel in [*self.files, *self.ghosts]:
            parts = rel.split("/")[:-1]
            ours = False  # below a directory of ours, every directory is ours
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                name = parts[i - 1]
                ours = ours or NAME in name or (d.startswith("usr/lib/systemd/system/") and name.endswith((".service.d", ".timer.d")))
                if ours:
                    dirs.add(d)
        return sorted(dirs)


def dir_macro(rel: str) -> tuple[str, str, str]:
    """(key, macro expression, rest) for a node path; UserError for a path no macro covers."""
    for prefix, key, macro in DIR_MACROS:
        if rel.startswith(prefix + "/"):
            return key, macro, rel[len(prefix) + 1:]
    raise UserError(
        f"/{rel}: no RPM directory macro covers this path; add its prefix to payload.DIR_MACROS "
        "and a %hip_copy line to rpm/ha-ingress-proxy.spec"
    )


def _read_node(node_dir: Path) -> dict[str, File]:
    manifest_path = node_dir.parent / f"{node_dir.name}.manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"{manifest_path}: missing; run `invoke render` again")
    modes = json.loads(manifest_path.read_text())
    on_disk = sorted(p.relative_to(node_dir).as_posix() for p in node_dir.rglob("*") if p.is_file())
    if on_disk != sorted(modes):
        extra = sorted(set(on_disk) - set(modes))
        missing = sorted(set(modes) - set(on_disk))
        raise UserError(f"{node_dir}: files and {manifest_path.name} disagree (not in manifest: {extra}, missing: {missing})")
    return {rel: File((node_dir / rel).read_bytes(), int(modes[rel], 8)) for rel in on_disk}


def role_independent(nodes_dir: Path) -> dict[str, File]:
    """The files every node shares. UserError naming each file that differs between nodes."""
    node_dirs = sorted(p for p in Path(nodes_dir).iterdir() if p.is_dir()) if Path(nodes_dir).is_dir() else []
    if not node_dirs:
        raise UserError(f"{nodes_dir}: no rendered nodes here; run `invoke render` first")
    trees = {d.name: _read_node(d) for d in node_dirs}
    first_name, first = next(iter(trees.items()))
    problems = []
    shared = {rel: f for rel, f in first.items() if rel not in ROLE_FILES}
    for name, tree in trees.items():
        other = {rel: f for rel, f in tree.items() if rel not in ROLE_FILES}
        for rel in sorted(set(shared) | set(other)):
            if rel not in other or rel not in shared:
                problems.append(f"/{rel}: present on {first_name if rel in shared else name} only, but it is not in layout.ROLE_FILES")
            elif other[rel] != shared[rel]:
                what = "content" if other[rel].content != shared[rel].content else "mode"
                problems.append(f"/{rel}: {what} differs between {first_name} and {name}, but it is not in layout.ROLE_FILES")
    if problems:
        raise UserError(*(f"payload: {p}" for p in problems), "payload: a package is per site: role-dependent files must be listed in layout.ROLE_FILES")
    return shared


def python_package(package_dir: Path = PACKAGE_DIR) -> dict[str, File]:
    """The node runtime's allowlisted modules and templates under PYTHON_DIR (no bytecode, no caches)."""
    allowed = {f"{m}.py" for m in layout.RUNTIME_MODULES}
    files, unlisted = {}, []
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if rel.as_posix() not in allowed and rel.parts[0] not in layout.RUNTIME_DATA_DIRS:
            unlisted.append(rel.as_posix())
            continue
        files[f"{PYTHON_DIR}/{package_dir.name}/{rel.as_posix()}"] = File(path.read_bytes(), 0o644)
    missing = sorted(allowed - {rel.split(f"{package_dir.name}/", 1)[1] for rel in files})
    if unlisted or missing:
        raise UserError(
            *(f"payload: {package_dir / rel}: not in layout.RUNTIME_MODULES (the node allowlist)" for rel in unlisted),
            *(f"payload: {package_dir / rel}: in layout.RUNTIME_MODULES but missing" for rel in missing),
        )
    return files


def site_facts(site_model: bytes) -> SiteFacts:
    site = json.loads(site_model)
    services = sorted({int(s["port"]) for s in site["services"]})
    stats = int(site["stats"]["port"])
    public = set(services)  # stats: only to stats.allow (stats_port/stats_allow below)
    stats_open = site["stats"].get("bind", "127.0.0.1") != "127.0.0.1"
    metrics = site.get("metrics") or {}
    hap_metrics = {int(metrics["haproxy_port"])} if metrics.get("haproxy") else set()
    metrics_open = metrics.get("bind") == "node"  # off loopback: to metrics.allow only, like the stats page
    return SiteFacts(
        site=site["site"],
        tcp_ports=tuple(sorted({*services, stats, *hap_metrics})),
        public_ports=tuple(sorted(public)),
        peers=tuple(sorted({n["address"] for n in site["nodes"]}, key=lambda a: tuple(int(x) for x in a.split(".")))),
        stats_port=stats if stats_open else 0,
        stats_allow=tuple(site["stats"].get("allow") or ()) if stats_open else (),
        metrics_ports=tuple(sorted({*hap_metrics, int(metrics["node_port"])})) if metrics_open else (),
        metrics_allow=tuple(metrics.get("allow") or ()) if metrics_open else (),
    )


def check_no_secrets(files: dict[str, File]) -> None:
    """UserError for a file that holds a password. The Python sources name lint's placeholder (lint.py): not a leak."""

    def leaks_in(rel: str) -> bool:
        content = files[rel].content
        return bool(ASSIGNMENT.search(content) or (not rel.startswith(PYTHON_DIR + "/") and PLACEHOLDER.search(content)))

    leaks = [f"/{rel}" for rel in sorted(files) if leaks_in(rel)]
    if leaks:
        raise UserError(*(f"payload: {rel}: looks like it holds a secret (stats password); secrets never go into a package" for rel in leaks))


def collect(nodes_dir: Path, python_dir: Path = PACKAGE_DIR) -> Payload:
    """build/nodes/ (as `invoke render` wrote it) -> the payload of this site's package."""
    files = role_independent(nodes_dir)
    if SITE_MODEL not in files:
        raise UserError(f"{nodes_dir}: no /{SITE_MODEL} in the rendered trees; the agent needs it")
    files.update(python_package(python_dir))
    files[layout.LAUNCHER] = File(LAUNCHER.encode(), layout.mode(layout.LAUNCHER))
    check_no_secrets(files)
    bgp = json.loads(files[SITE_MODEL].content).get("mode") == "bgp"  # only this mode's role files are ghosts
    for rel in [*files, *ROLE_FILES]:
        dir_macro(rel)
    return Payload(
        version=__version__,
        files=files,
        ghosts=tuple(sorted(rel for rel in ROLE_FILES if layout.renders_for(rel, bgp))),
        facts=site_facts(files[SITE_MODEL].content),
    )
