"""The site's payload -> an RPM (rpmbuild, rpm/), a .deb (dpkg-deb, deb/) and a yum repo.

One function per task (build_rpm, build_deb, build_repo); each renders the
inventory first, so a package always matches the inventory it names.
Both packages are reproducible: every timestamp is SOURCE_DATE_EPOCH (the
last commit's time unless set), owners are root:root, entries are sorted.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ha_ingress_build import payload, signing
from ha_ingress_build.digest import file_sha256
from ha_ingress_build.payload import Payload
from ha_ingress_proxy import layout
from ha_ingress_proxy.layout import DOC_DIR, NAME
from ha_ingress_proxy.plan import CHECK_USER
from ha_ingress_proxy.subproc import require_tool, run
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.render import replace_dir, write_tree

PROJECT = Path(__file__).resolve().parents[2]
RPM_DIR = PROJECT / "rpm"
DEB_DIR = PROJECT / "deb"
# Shell blocks both packages' scripts are built from: the spec and deb/ name them with `@include <file>@`.
SCRIPTLETS_DIR = PROJECT / "scriptlets"
SPEC = RPM_DIR / f"{NAME}.spec"
FALLBACK_MACROS = RPM_DIR / "macros.systemd-fallback"
RPMLINTRC = RPM_DIR / f"{NAME}.rpmlintrc"
LICENSE = PROJECT / "LICENSE"
README = PROJECT / "README.md"
# Observability files for the ops team, in the package's doc directory (docs/observability.md):
# doc-dir relative path -> source. The RPM's %doc takes the directories; the .deb gets the same tree.
OBSERVABILITY_DOCS = {
    "observability.md": PROJECT / "docs" / "observability.md",
    "prometheus/alerts.yml": PROJECT / "docs" / "prometheus" / "alerts.yml",
    "prometheus/alerts_test.yml": PROJECT / "docs" / "prometheus" / "alerts_test.yml",
    "prometheus/scrape.yml": PROJECT / "docs" / "prometheus" / "scrape.yml",
    "grafana/ha-ingress-proxy.json": PROJECT / "docs" / "grafana" / "ha-ingress-proxy.json",
}
MAINTAINER = "ha-ingress-proxy dev <dev@ha-ingress-proxy.invalid>"
RPM_REQUIRES = ("haproxy", "keepalived", "rsyslog", "logrotate", "python3", "python3-jinja2", "python3-pyyaml", "iproute")
DEB_DEPENDS = ("haproxy", "keepalived", "rsyslog", "logrotate", "python3", "python3-jinja2", "python3-yaml", "iproute2",
               "nftables", "openssl")
# A macro rpm did not expand: %{...}, %(...) or %name. Our scriptlets use no printf-style %.
UNEXPANDED = re.compile(r"%\{|%\(|%[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Built:
    path: Path
    sha256: str


def sha256(path: Path) -> str:
    return file_sha256(path)


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH when set, else the last commit's time: the same commit builds the same bytes."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    require_tool("git", "git")
    out = run(["git", "-C", str(PROJECT), "log", "-1", "--format=%ct"], context="SOURCE_DATE_EPOCH from the last commit").stdout
    if not out.strip().isdigit():
        raise UserError(f"{PROJECT}: no commit to take SOURCE_DATE_EPOCH from; commit, or set SOURCE_DATE_EPOCH")
    return int(out.strip())


def rpm_release(number: int, site: str) -> str:
    """<n>.<site>: rpm allows letters, digits, '.', '_', '+', '~', '^' in Release, not '-'.

    A site is [a-z0-9-]; '-' becomes '_', which no site contains, so the mapping
    is reversible and "1.dc1_ingress" < "2.dc1_ingress" as rpm compares them.
    """
    if number < 1:
        raise UserError(f"--release {number}: must be 1 or more")
    return f"{number}.{site.replace('-', '_')}"


def deb_version(version: str, number: int, site: str) -> str:
    """<version>-<n>+<site>: a Debian revision allows [A-Za-z0-9+.~], so '-' becomes '.'."""
    if number < 1:
        raise UserError(f"--release {number}: must be 1 or more")
    return f"{version}-{number}+{site.replace('-', '.')}"


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes | None, mode: int, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def rpm_files_list(pl: Payload) -> str:
    """The %files manifest: every path through its directory macro; %config(noreplace) for /etc, %ghost for role files."""
    config = set(pl.config_files())
    lines = ["%defattr(-,root,root,-)"]
    for d in pl.owned_dirs():
        lines.append(f"%dir {_macro_path(d)}")
    for rel in sorted(pl.files):
        prefix = "%config(noreplace) " if rel in config else ""
        lines.append(f"{prefix}{_macro_path(rel)}")
    for rel in pl.ghosts:
        lines.append(f"%ghost %attr(0644,root,root) {_macro_path(rel)}")
    return "\n".join(lines) + "\n"


def _macro_path(rel: str) -> str:
    _key, macro, rest = payload.dir_macro(rel)
    return f"{macro}/{rest}"


def rpm_source(pl: Payload, dest: Path, mtime: int) -> Path:
    """Source0: tree/<key>/... (by directory macro), files.list, LICENSE; sorted, root-owned, fixed mtimes."""
    top = f"{NAME}-{pl.version}"
    entries: dict[str, tuple[bytes | None, int]] = {}
    for rel in sorted(pl.files):
        key, _macro, rest = payload.dir_macro(rel)
        entries[f"{top}/tree/{key}/{rest}"] = (pl.files[rel].content, pl.files[rel].mode)
    entries[f"{top}/files.list"] = (rpm_files_list(pl).encode(), 0o644)
    entries[f"{top}/LICENSE"] = (LICENSE.read_bytes(), 0o644)
    entries[f"{top}/README.md"] = (README.read_bytes(), 0o644)
    for rel, src in OBSERVABILITY_DOCS.items():
        entries[f"{top}/{rel}"] = (src.read_bytes(), 0o644)
    dirs = {top}
    for name in entries:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted([*dirs, *entries]):
            if name in dirs:
                _tar_add(tar, name, None, 0o755, mtime)
            else:
                _tar_add(tar, name, entries[name][0], entries[name][1], mtime)
    return dest


def system_has_systemd_macros() -> bool:
    return bool(run(["rpm", "--eval", "%{?_unitdir}"], context="rpm --eval").stdout.strip())


def check_rpm_expanded(rpm_path: Path) -> None:
    """Fail when a macro survived into the package: scriptlets, file list, dependencies."""
    problems = []
    for what, argv in (
        ("scriptlets", ["rpm", "-qp", "--scripts", str(rpm_path)]),
        ("file list", ["rpm", "-qp", "--list", str(rpm_path)]),
        ("requires", ["rpm", "-qp", "--requires", str(rpm_path)]),
    ):
        text = run(argv, context=f"rpm -qp {what}").stdout
        for line in text.splitlines():
            if UNEXPANDED.search(line):
                problems.append(f"{rpm_path.name}: unexpanded macro in the {what}: {line.strip()}")
    if problems:
        raise UserError(*problems, "(a macro this rpm does not know: add it to rpm/macros.systemd-fallback)")


def rpm_from_payload(pl: Payload, out: Path, release: int = 1, lint: bool = True) -> Built:
    """The RPM of a collected payload (build_rpm without the render; tests build variants with it)."""
    require_tool("rpmbuild", "rpm")
    out = Path(out).resolve()
    sde = source_date_epoch()
    top = out / "rpmbuild"
    shutil.rmtree(top, ignore_errors=True)
    for sub in ("SOURCES", "SPECS", "BUILD", "RPMS", "SRPMS", "BUILDROOT"):
        (top / sub).mkdir(parents=True)
    rpm_source(pl, top / "SOURCES" / f"{NAME}-{pl.version}.tar", sde)
    spec = top / "SPECS" / SPEC.name
    spec.write_text(assemble(SPEC, script_values(pl)))
    defines = {
        "_topdir": str(top),
        "hip_version": pl.version,
        "hip_release": rpm_release(release, pl.facts.site),
        "hip_site": pl.facts.site,
        "hip_units": " ".join(pl.units()) or "%{nil}",
    }
    argv: list[str] = ["rpmbuild", "-bb"]
    if not system_has_systemd_macros():
        # Debian's rpm: our stand-ins, and no BuildRequires check (its rpm database is empty).
        argv += ["--load", str(FALLBACK_MACROS), "--nodeps"]
    for key, value in defines.items():
        argv += ["--define", f"{key} {value}"]
    argv.append(str(spec))
    run(argv, env={"SOURCE_DATE_EPOCH": str(sde), "TZ": "UTC"}, context="rpmbuild", timeout=600)
    built = sorted((top / "RPMS" / "noarch").glob("*.rpm"))
    if len(built) != 1:
        raise UserError(f"rpmbuild: expected one noarch RPM in {top / 'RPMS/noarch'}, found {[p.name for p in built]}")
    check_rpm_expanded(built[0])
    if lint:
        rpmlint(built[0])
    dest_dir = out / "packages"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / built[0].name
    shutil.copyfile(built[0], dest)
    return Built(dest, sha256(dest))


def rpmlint(rpm_path: Path) -> str:
    """rpmlint with rpm/ha-ingress-proxy.rpmlintrc; returns its output, UserError on any error or unfiltered warning."""
    require_tool("rpmlint", "rpmlint")
    proc = run(["rpmlint", "-r", str(RPMLINTRC), str(rpm_path)], check=False, context="rpmlint")
    summary = re.search(r"(\d+) errors?, (\d+) warnings?", proc.stdout or "")
    if proc.returncode != 0 or not summary or summary.groups() != ("0", "0"):
        raise UserError(f"rpmlint {rpm_path.name}: not clean (fix it, or filter with a reason in {RPMLINTRC.name})", *(proc.stdout or "").splitlines())
    return proc.stdout


# --- package scripts: templates + scriptlets/ ------------------------------------

_INCLUDE = re.compile(r"^([ \t]*)@include ([a-z0-9-]+\.sh)@[ \t]*$", re.M)


def _fill(template: str, values: dict[str, str], source: Path) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    left = sorted(set(re.findall(r"@[A-Z_]+@", template)))
    if left:
        raise UserError(f"{source}: placeholders with no value: {', '.join(left)}")
    return template


def script_values(pl: Payload) -> dict[str, str]:
    """The site's values in the RPM's and the .deb's scripts."""
    return {
        "UNITS": " ".join(pl.units()),
        "TCP_PORTS": " ".join(map(str, pl.facts.tcp_ports)),
        "OPEN_PORTS": " ".join(map(str, pl.facts.public_ports)),
        "PEERS": " ".join(pl.facts.peers),
        "STATS_PORT": str(pl.facts.stats_port),
        "STATS_ALLOW": " ".join(pl.facts.stats_allow),
        "METRICS_PORTS": " ".join(map(str, pl.facts.metrics_ports)),
        "METRICS_ALLOW": " ".join(pl.facts.metrics_allow),
        "SYSUSERS": layout.shown(layout.SYSUSERS),
        "CHECK_USER": CHECK_USER,
        "GHOSTS": " ".join(f"/{g}" for g in pl.ghosts),
    }


def assemble(template: Path, values: dict[str, str]) -> str:
    """A package script (or the spec): each `@include <file>@` line becomes that scriptlets/ block,
    indented like the line; then the values are filled in."""

    def include(match: re.Match[str]) -> str:
        indent, name = match.groups()
        block = SCRIPTLETS_DIR / name
        if not block.is_file():
            raise UserError(f"{template}: @include {name}@: no such block in {SCRIPTLETS_DIR}")
        return "\n".join(indent + line if line else line for line in block.read_text().rstrip("\n").splitlines())

    return _fill(_INCLUDE.sub(include, template.read_text()), values, template)


# --- .deb ------------------------------------------------------------------------


def deb_values(pl: Payload, version: str) -> dict[str, str]:
    installed_kib = sum((len(f.content) + 1023) // 1024 for f in pl.files.values())
    return {
        "VERSION": version,
        "SITE": pl.facts.site,
        "MAINTAINER": MAINTAINER,
        "DEPENDS": ", ".join(DEB_DEPENDS),
        "INSTALLED_SIZE": str(installed_kib),
        **script_values(pl),
    }


def stage_deb(pl: Payload, stage: Path, version: str, mtime: int) -> None:
    """The package tree for dpkg-deb: payload files, DEBIAN/ control files and maintainer scripts."""
    values = deb_values(pl, version)
    files = dict(pl.files)
    files[f"{DOC_DIR}/copyright"] = payload.File(LICENSE.read_bytes(), 0o644)
    files[f"{DOC_DIR}/README.md"] = payload.File(README.read_bytes(), 0o644)
    for rel, src in OBSERVABILITY_DOCS.items():
        files[f"{DOC_DIR}/{rel}"] = payload.File(src.read_bytes(), 0o644)
    md5 = "".join(f"{hashlib.md5(files[rel].content).hexdigest()}  {rel}\n" for rel in sorted(files))
    control = {
        "DEBIAN/control": payload.File(assemble(DEB_DIR / "control.in", values).encode(), 0o644),
        "DEBIAN/conffiles": payload.File("".join(f"/{rel}\n" for rel in pl.config_files()).encode(), 0o644),
        "DEBIAN/md5sums": payload.File(md5.encode(), 0o644),
        **{f"DEBIAN/{script}": payload.File(assemble(DEB_DIR / script, values).encode(), 0o755)
           for script in ("postinst", "prerm", "postrm")},
    }
    write_tree({**files, **control}, stage)
    for path in sorted(stage.rglob("*"), reverse=True):
        if path.is_dir():
            os.chmod(path, 0o755)
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    os.chmod(stage, 0o755)
    os.utime(stage, (mtime, mtime))


def deb_from_payload(pl: Payload, out: Path, release: int = 1) -> Built:
    """The .deb of a collected payload (build_deb without the render)."""
    require_tool("dpkg-deb", "dpkg")
    out = Path(out).resolve()
    sde = source_date_epoch()
    version = deb_version(pl.version, release, pl.facts.site)
    stage = out / "deb-stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    stage_deb(pl, stage, version, sde)
    dest_dir = out / "packages"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{NAME}_{version}_all.deb"
    run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(dest)],
        env={"SOURCE_DATE_EPOCH": str(sde)},
        context="dpkg-deb",
    )
    return Built(dest, sha256(dest))


# --- yum repo --------------------------------------------------------------------

REPO_HEAD = """\
# ha-ingress-proxy for site {site}: drop into /etc/yum.repos.d/ and run
#     yum install ha-ingress-proxy
[ha-ingress-proxy-{site}]
name=ha-ingress-proxy ({site})
baseurl={baseurl}
enabled=1
"""
REPO_SIGNED = """\
# The package and repodata/repomd.xml are signed with the key at gpgkey
# (fingerprint {fingerprint}); yum/dnf imports it on first use and refuses
# anything it did not sign.
gpgcheck=1
repo_gpgcheck=1
gpgkey={gpgkey}
"""
REPO_UNSIGNED = """\
# NOT SIGNED: this repo was built with --unsigned. Nothing proves the package or
# the metadata came from its builder; trust rests on the transport and on where
# baseurl points. Build with --sign-key to get gpgcheck=1 and repo_gpgcheck=1.
gpgcheck=0
repo_gpgcheck=0
"""


def repo_file(site: str, baseurl: str, key: signing.SigningKey | None) -> str:
    """The .repo text; baseurl must have passed signing.check_repo_url (one line, URL characters only)."""
    text = REPO_HEAD.format(site=site, baseurl=baseurl)
    if key is None:
        return text + REPO_UNSIGNED
    return text + REPO_SIGNED.format(fingerprint=key.fingerprint, gpgkey=signing.public_key_url(baseurl))


def repo_from_rpm(built: Built, site: str, out: Path, baseurl: str = "", key: signing.SigningKey | None = None,
                  allow_http: bool = False) -> Path:
    """An RPM -> <out>/repo/: the RPM, repodata/ (createrepo_c) and ha-ingress-proxy.repo.

    With a key: repodata/repomd.xml.asc (detached, armored) and the public key as
    RPM-GPG-KEY-ha-ingress-proxy beside repodata/ (the .repo's gpgkey); the RPM should
    already be signed (pipeline.build_repo does both). Without: the .repo says gpgcheck=0.
    """
    require_tool("createrepo_c", "createrepo-c")
    out = Path(out).resolve()
    url = signing.check_repo_url(baseurl, "--baseurl", allow_http, allow_file=True) if baseurl else (out / "repo").as_uri()
    sde = source_date_epoch()

    def fill(tmp: Path) -> None:
        shutil.copyfile(built.path, tmp / built.path.name)
        run(
            ["createrepo_c", "--quiet", "--set-timestamp-to-revision", "--revision", str(sde), str(tmp)],
            context="createrepo_c",
        )
        if key is not None:
            signing.sign_file(tmp / "repodata" / "repomd.xml", key)
            signing.export_public_key(key, tmp / signing.PUBLIC_KEY_NAME)
        (tmp / f"{NAME}.repo").write_text(repo_file(site, url, key))

    replace_dir(fill, out / "repo")
    return out / "repo"


__all__ = ["rpm_from_payload", "deb_from_payload", "repo_from_rpm", "repo_file", "rpmlint", "rpm_release", "deb_version", "source_date_epoch", "Built"]
