"""The RPM and the .deb: contents, metadata, scriptlets, reproducibility, rpmlint, installs.

Builds the example site (examples/active-active.yaml) with the real rpmbuild and
dpkg-deb, inspects the results with rpm -qp / dpkg-deb, installs the RPM into
empty roots (upgrade included) and the .deb, with its Debian dependencies, into
a throwaway Debian 12 root where haproxy -c and keepalived -t then run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ha_ingress_build import lint, packages, payload, pipeline, release_roots
from ha_ingress_proxy import layout
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy import layout
from ha_ingress_proxy.layout import PYTHON_DIR, ROLE_FILES, RUNTIME_MODULES, SITE_MODEL

# the example site is a VRRP site: its packages own only that mode's role files
SITE_ROLE_FILES = tuple(rel for rel in ROLE_FILES if layout.renders_for(rel, bgp=False))
from ha_ingress_proxy.render import File

from ..conftest import EXAMPLES, ROOT, need_root_and

pytestmark = pytest.mark.packages

SCRIPTLET_TAGS = ("PREIN", "POSTIN", "PREUN", "POSTUN", "POSTTRANS")
# Paths EL's haproxy and keepalived packages own (from their Fedora/EL specs; no EL host here to
# `rpm -ql` them): we must ship none of these files and own none of these directories.
EL_OWNED = (
    "/etc/haproxy",
    "/etc/haproxy/haproxy.cfg",
    "/etc/haproxy/conf.d",
    "/etc/sysconfig/haproxy",
    "/etc/logrotate.d/haproxy",
    "/usr/lib/systemd/system/haproxy.service",
    "/var/lib/haproxy",
    "/etc/keepalived",
    "/etc/keepalived/keepalived.conf",
    "/etc/sysconfig/keepalived",
    "/usr/lib/systemd/system/keepalived.service",
    "/usr/libexec/keepalived",
)
# Documentation goes where each distribution wants it; everything else must match.
DOC_DIRS = ("usr/share/doc/", "usr/share/licenses/")


def sh(*argv: str | os.PathLike, **kwargs) -> str:
    proc = subprocess.run([os.fspath(a) for a in argv], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def rpm_files(rpm: Path) -> dict[str, dict[str, str]]:
    fmt = "[%{FILENAMES}\\t%{FILEMODES:octal}\\t%{FILEUSERNAME}\\t%{FILEGROUPNAME}\\t%{FILEFLAGS:fflags}\\n]"
    rows = {}
    for line in sh("rpm", "-qp", "--qf", fmt, rpm).splitlines():
        name, mode, user, group, flags = line.split("\t")
        rows[name] = {"mode": mode, "user": user, "group": group, "flags": flags}
    return rows


def tree_of(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, str]]:
    """path -> (octal mode, sha256 or 'dir') for everything under root."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(rel == s.rstrip("/") or rel.startswith(s) for s in skip):
            continue
        mode = f"{path.lstat().st_mode & 0o7777:04o}"
        out[rel] = (mode, "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def rpm_install(root: Path, rpm: Path, upgrade: bool = False) -> None:
    # --nodeps: this root has no haproxy, keepalived, python3... (nor an EL rpmdb to resolve
    # them in), so whether the Requires are satisfiable on EL is NOT checked here.
    # --noscripts: an empty root has no /bin/sh; the scriptlets are checked as text and with
    # shellcheck (test_scriptlets), and run for real only by the .deb install test.
    sh("rpm", "--root", root, "--dbpath", "/var/lib/rpm", "-U" if upgrade else "-i", "--nodeps", "--noscripts", rpm)


# --- the RPM, as built -------------------------------------------------------------


def test_rpm_header(built):
    fmt = "%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{LICENSE}|%{BUILDHOST}|%{BUILDTIME}"
    name, version, release, arch, lic, host, btime = sh("rpm", "-qp", "--qf", fmt, built.rpm).split("|")
    assert (name, version, release, arch, lic, host) == ("ha-ingress-proxy", built.payload.version, "1.dc1_ingress", "noarch", "MIT", "reproducible")
    assert int(btime) == packages.source_date_epoch()
    assert built.rpm.name == f"ha-ingress-proxy-{version}-1.dc1_ingress.noarch.rpm"


def test_rpm_requires(built):
    requires = {line.split()[0] for line in sh("rpm", "-qp", "--requires", built.rpm).splitlines()}
    assert set(packages.RPM_REQUIRES) <= requires
    assert not {r for r in requires if "ha-ingress-proxy" in r and not r.startswith("config(")}


def test_rpm_files_modes_owners_flags(built):
    files = rpm_files(built.rpm)
    pl = built.payload
    for rel, f in pl.files.items():
        row = files.get(f"/{rel}")
        assert row, f"/{rel} is in the payload but not in the RPM"
        assert int(row["mode"], 8) & 0o7777 == f.mode, rel
        flags = row["flags"]
        if rel.startswith("etc/"):
            assert "c" in flags and "n" in flags, f"/{rel}: an admin edits /etc: %config(noreplace), got {flags!r}"
        else:
            assert "c" not in flags, f"/{rel}: not a config file, got {flags!r}"
    for rel in SITE_ROLE_FILES:
        assert "g" in files[f"/{rel}"]["flags"], f"/{rel}: the agent writes it: %ghost"
    assert all((r["user"], r["group"]) == ("root", "root") for r in files.values())
    # Generic payload: every role-independent rendered file and every source of the Python packages.
    node = sorted(p for p in (built.out / "nodes").iterdir() if p.is_dir())[0]
    for rel in (p.relative_to(node).as_posix() for p in node.rglob("*") if p.is_file()):
        assert f"/{rel}" in files
    assert not [f for f in files if f.endswith((".pyc", ".pyo")) or "__pycache__" in f]


def _python_modules(paths) -> set[str]:
    """The Python modules among package paths, as 'ha_ingress_proxy/agent/apply' (relative to PYTHON_DIR)."""
    prefix = f"/{PYTHON_DIR}/"
    return {p[len(prefix):-3] for p in ("/" + p.lstrip("./") for p in paths) if p.startswith(prefix) and p.endswith(".py")}


def test_packages_ship_exactly_the_node_runtime_allowlist(built):
    """Only the node runtime reaches a node: the modules in the RPM and in the .deb are the allowlist, no more."""
    allowlist = {f"ha_ingress_proxy/{m}" for m in RUNTIME_MODULES}
    in_rpm = _python_modules(rpm_files(built.rpm))
    in_deb = _python_modules(line.split()[-1] for line in sh("dpkg-deb", "-c", built.deb).splitlines())
    assert in_rpm == allowlist, sorted(in_rpm ^ allowlist)
    assert in_deb == allowlist, sorted(in_deb ^ allowlist)
    src = Path(payload.PACKAGE_DIR)
    for path in src.rglob("*"):
        rel = path.relative_to(src).as_posix()
        if path.is_file() and rel.startswith("templates/"):
            assert f"/{PYTHON_DIR}/ha_ingress_proxy/{rel}" in rpm_files(built.rpm)


def test_payload_refuses_a_module_not_in_the_allowlist(tmp_path):
    pkg = tmp_path / "ha_ingress_proxy"
    shutil.copytree(payload.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "bench.py").write_text("import testinfra\n")
    with pytest.raises(UserError) as exc:
        payload.python_package(pkg)
    assert exc.value.lines == [f"payload: {pkg / 'bench.py'}: not in layout.RUNTIME_MODULES (the node allowlist)"]


def test_rpm_owns_nothing_of_haproxy_or_keepalived(built):
    ours = set(rpm_files(built.rpm))
    debian = set()
    for pkg in ("haproxy", "keepalived"):
        for line in sh("dpkg", "-L", pkg).splitlines():
            if Path(line).is_file():
                debian.add(re.sub(r"^/lib/", "/usr/lib/", line))  # Debian 12 is usr-merged
    assert not ours & debian, "files the Debian haproxy/keepalived packages own"
    assert not ours & set(EL_OWNED), "paths EL's haproxy/keepalived packages own"


def test_scriptlets(built):
    scripts = sh("rpm", "-qp", "--scripts", built.rpm)
    assert not packages.UNEXPANDED.search(scripts), "a macro was left unexpanded"
    assert "preset haproxy.service keepalived.service rsyslog.service" in scripts
    assert "systemctl try-reload-or-restart haproxy.service" in scripts
    assert "systemd-sysctl" in scripts and "try-restart rsyslog.service" in scripts
    assert "semanage port -a -t http_port_t -p tcp" in scripts and "for port in 80 443 8888 9101;" in scripts  # services, stats, haproxy metrics
    assert 'source address=\\"$peer\\" protocol value=\\"vrrp\\" accept' in scripts
    assert "for peer in 192.168.1.9 192.168.1.11;" in scripts
    for unit in built.payload.units():  # the agent's unit, once it exists
        assert unit in scripts
    # Each scriptlet, and each .deb maintainer script, passes shellcheck.
    need_root_and("shellcheck")
    work = built.out / "scriptlets"
    work.mkdir(exist_ok=True)
    for tag in SCRIPTLET_TAGS:
        body = sh("rpm", "-qp", "--qf", f"%{{{tag}}}", built.rpm)
        if body and body != "(none)":
            (work / tag.lower()).write_text("#!/bin/sh\n" + body + "\n")
    sh("dpkg-deb", "-e", built.deb, work / "DEBIAN")
    targets = sorted(p for p in work.rglob("*") if p.is_file() and p.read_text().startswith("#!/bin/sh"))
    assert len(targets) >= 5
    sh("shellcheck", "--shell=sh", *targets)


def test_rpm_and_deb_run_the_same_scriptlet_blocks(built, tmp_path):
    """Every block of scriptlets/ is in both packages' scripts, filled with the same values, and nothing unfilled."""
    rpm_scripts = sh("rpm", "-qp", "--scripts", built.rpm)
    sh("dpkg-deb", "-e", built.deb, tmp_path / "DEBIAN")
    deb_scripts = "".join((tmp_path / "DEBIAN" / s).read_text() for s in ("postinst", "prerm", "postrm"))
    values = packages.script_values(built.payload)
    blocks = sorted(packages.SCRIPTLETS_DIR.glob("*.sh"))
    assert len(blocks) >= 5
    for block in blocks:
        body = block.read_text()
        for key, value in values.items():
            body = body.replace(f"@{key}@", value)
        # compare line by line with the indentation stripped: each script indents a block as its context needs
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        for scripts, what in ((rpm_scripts, "RPM"), (deb_scripts, ".deb")):
            flat = "\n".join(line.strip() for line in scripts.splitlines() if line.strip())
            assert "\n".join(lines) in flat, f"{block.name} missing from the {what} scripts"
    assert not re.search(r"^\s*@include ", rpm_scripts + deb_scripts, re.M)
    assert not re.search(r"@[A-Z_]+@", rpm_scripts + deb_scripts)


def test_rpmlint_clean(built):
    out = packages.rpmlint(built.rpm)
    assert "0 errors, 0 warnings" in out


def test_reproducible(built, rebuilt):
    assert built.out != rebuilt.out
    assert packages.sha256(built.rpm) == packages.sha256(rebuilt.rpm)
    assert packages.sha256(built.deb) == packages.sha256(rebuilt.deb)


# --- the .deb, as built ------------------------------------------------------------


def test_deb_control(built):
    info = sh("dpkg-deb", "-f", built.deb, "Package", "Version", "Architecture", "Depends")
    assert "Package: ha-ingress-proxy" in info and "Architecture: all" in info
    assert f"Version: {built.payload.version}-1+dc1.ingress" in info
    assert "Depends: " + ", ".join(packages.DEB_DEPENDS) in info
    listing = sh("dpkg-deb", "-c", built.deb)
    assert all(line.split()[1] == "root/root" for line in listing.splitlines())
    conffiles = sh("dpkg-deb", "--ctrl-tarfile", built.deb)  # readable at all
    assert conffiles is not None
    work = built.out / "deb-control"
    shutil.rmtree(work, ignore_errors=True)
    sh("dpkg-deb", "-e", built.deb, work)
    assert (work / "conffiles").read_text().split() == [f"/{r}" for r in built.payload.config_files()]


# --- both: same tree, no secret ------------------------------------------------------


def test_rpm_and_deb_install_the_same_tree(built, tmp_path):
    need_root_and("rpm", "dpkg-deb")
    rpm_root, deb_root = tmp_path / "rpm", tmp_path / "deb"
    rpm_root.mkdir()
    rpm_install(rpm_root, built.rpm)
    sh("dpkg-deb", "-x", built.deb, deb_root)
    rpm_tree = tree_of(rpm_root, skip=("var/lib/rpm", "var", *DOC_DIRS))
    deb_tree = tree_of(deb_root, skip=DOC_DIRS)
    assert rpm_tree == deb_tree
    # Documentation: each in its distribution's place.
    assert (rpm_root / "usr/share/licenses/ha-ingress-proxy/LICENSE").is_file()
    assert (deb_root / "usr/share/doc/ha-ingress-proxy/copyright").is_file()
    # The alert rules, their promtool tests and the Grafana dashboard, in both doc directories.
    for root in (rpm_root, deb_root):
        for rel in ("prometheus/alerts.yml", "prometheus/alerts_test.yml", "prometheus/scrape.yml",
                    "grafana/ha-ingress-proxy.json", "observability.md"):
            shipped = root / "usr/share/doc/ha-ingress-proxy" / rel
            assert shipped.read_bytes() == (ROOT / "docs" / rel).read_bytes(), shipped
    # No secret in either: lint's placeholder outside the Python sources, or a password assignment.
    for root in (rpm_root, deb_root):
        for path in root.rglob("*"):
            if path.is_file():
                rel = path.relative_to(root).as_posix()
                data = path.read_bytes()
                assert not payload.ASSIGNMENT.search(data), rel
                if not rel.startswith(PYTHON_DIR):
                    assert lint.LINT_ENV["HAPROXY_STATS_PASSWORD"].encode() not in data, rel
    assert not (rpm_root / layout.SECRETS_ENV).exists()


def test_rpm_upgrade_keeps_edited_config(built, tmp_path):
    """N -> N+1 (same files) -> N+2 (a changed /etc file): the admin's edit survives; .rpmnew only when needed."""
    need_root_and("rpm")
    root = tmp_path / "root"
    root.mkdir()
    out = tmp_path / "out"
    n2 = packages.rpm_from_payload(built.payload, out / "n2", release=2, lint=False).path
    logrotate = "etc/logrotate.d/ha-ingress-proxy"
    changed = dict(built.payload.files)
    changed[logrotate] = File(changed[logrotate].content.replace(b"rotate 14", b"rotate 30"), 0o644)
    n3 = packages.rpm_from_payload(dataclasses.replace(built.payload, files=changed), out / "n3", release=3, lint=False).path

    rpm_install(root, built.rpm)
    edited = (root / logrotate).read_bytes().replace(b"daily", b"weekly")
    (root / logrotate).write_bytes(edited)

    rpm_install(root, n2, upgrade=True)
    assert (root / logrotate).read_bytes() == edited
    assert not (root / f"{logrotate}.rpmnew").exists(), "same packaged content: no .rpmnew"

    rpm_install(root, n3, upgrade=True)
    assert (root / logrotate).read_bytes() == edited, "%config(noreplace): the admin's file stays"
    assert b"rotate 30" in (root / f"{logrotate}.rpmnew").read_bytes(), "the new default lands beside it"
    release = sh("rpm", "--root", root, "--dbpath", "/var/lib/rpm", "-q", "--qf", "%{RELEASE}", "ha-ingress-proxy")
    assert release == "3.dc1_ingress"
    # Nothing else is config: replaced on upgrade without a trace.
    assert [p.relative_to(root).as_posix() for p in root.rglob("*.rpmnew")] == [f"{logrotate}.rpmnew"]


# --- the .deb on a real Debian 12 ------------------------------------------------------


def _in_root(root: Path, command: str) -> str:
    """Run a shell command chrooted in root, with /proc and /dev in a private mount namespace."""
    script = (
        "mount --make-rprivate / && "
        f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && "
        f"exec chroot {root} sh -ec {_q(command)}"
    )
    return sh("unshare", "--mount", "--fork", "sh", "-ec", script, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"})


def _q(s: str) -> str:
    import shlex

    return shlex.quote(s)


def test_deb_installs_on_debian12_with_its_dependencies(built, roots_cache, tmp_path):
    need_root_and("debootstrap", "unshare", "chroot")
    try:
        base = release_roots.ensure_root("debian12-minbase", roots_cache)
    except UserError as exc:
        pytest.fail("\n".join(exc.lines), pytrace=False)
    root = roots_cache / "debian12-deb-test"
    shutil.rmtree(root, ignore_errors=True)
    try:
        sh("cp", "-a", "--reflink=auto", base, root)
        # No daemon may start in the chroot (it would bind the host's ports): policy-rc.d says no.
        (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
        os.chmod(root / "usr/sbin/policy-rc.d", 0o755)
        shutil.copyfile(built.deb, root / "tmp" / built.deb.name)
        log = _in_root(root, f"apt-get install -y -q --no-install-recommends /tmp/{built.deb.name}")
        assert "Setting up ha-ingress-proxy" in log, log
        status = _in_root(root, "dpkg-query -W -f='${Status} ${Version}\\n' ha-ingress-proxy haproxy keepalived python3-jinja2 python3-yaml")
        assert status.count("install ok installed") == 5, status
        # The launcher runs the installed node runtime with Debian's python3, jinja2 and yaml: the
        # node verb `apply` writes each node's role files into a scratch root holding the installed
        # site model; the chroot's haproxy and keepalived then check them.
        for node, address in (("proxy-1", "192.168.1.9"), ("proxy-2", "192.168.1.11")):
            scratch = root / "tmp" / node
            (scratch / SITE_MODEL).parent.mkdir(parents=True)
            shutil.copyfile(root / SITE_MODEL, scratch / SITE_MODEL)
            (scratch / layout.CONFIG_DIR).mkdir(parents=True, exist_ok=True)
            (scratch / layout.NODE_FILE).write_text(f"ha_ingress_node: {node}\n")
            os.chmod(scratch / layout.NODE_FILE, 0o600)
            (scratch / layout.SECRETS_ENV).write_text("HAPROXY_STATS_PASSWORD=deb-test-password\n")
            os.chmod(scratch / layout.SECRETS_ENV, 0o600)
            (scratch / "ip.json").write_text(
                json.dumps([{"ifname": "ens192", "addr_info": [{"family": "inet", "local": address}]}]))
            _in_root(root, f"ha-ingress-proxy apply --root /tmp/{node} --ip-addr-json /tmp/{node}/ip.json")
            view = tmp_path / node  # only what the agent writes at boot: the rest comes from the package
            for rel in (*SITE_ROLE_FILES, SITE_MODEL):
                (view / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(scratch / rel, view / rel)
            assert (built.out / "nodes" / node / SITE_MODEL).read_bytes() == (root / SITE_MODEL).read_bytes()
            findings = lint.lint_node(view, root=root, label="debian12 + ha-ingress-proxy.deb")
            assert not findings, "\n".join(f.line() for f in findings)
        # Build-side code is not on the node: no render verb, no ha_ingress_build.
        assert "invalid choice: 'render'" in _in_root(root, "ha-ingress-proxy render --inventory x 2>&1 || true")
        # Removal: the ghosts go, the conffiles stay until purge.
        (root / ROLE_FILES[0]).write_text("# written by the agent\n")
        _in_root(root, "apt-get remove -y -q ha-ingress-proxy")
        assert not (root / ROLE_FILES[0]).exists()
        assert (root / layout.HAPROXY_ENV).exists()
        _in_root(root, "dpkg --purge ha-ingress-proxy")
        assert not (root / layout.CONFIG_DIR).exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the yum repo ----------------------------------------------------------------------


def test_repo(built, tmp_path):
    need_root_and("createrepo_c")
    out = tmp_path / "out"
    try:
        repo = pipeline.build_repo(EXAMPLES / "active-active.yaml", out, baseurl="https://repo.example.com/hip/",
                                   unsigned=True)  # the signed repo: test_signing.py
    except UserError as exc:
        pytest.fail("\n".join(exc.lines), pytrace=False)
    assert (repo / "repodata/repomd.xml").is_file()
    assert (repo / built.rpm.name).read_bytes() == built.rpm.read_bytes()
    text = (repo / "ha-ingress-proxy.repo").read_text()
    assert "baseurl=https://repo.example.com/hip/" in text and "gpgcheck=0" in text
    if shutil.which("dnf"):
        found = sh(
            "dnf", "-q", "--installroot", tmp_path / "dnfroot", "--setopt=reposdir=/nonexistent", "--releasever=9",
            f"--repofrompath=hip,{repo.as_uri()}", "--repo=hip", "repoquery", "--qf", "%{name}-%{version}-%{release}", "ha-ingress-proxy",
        )
        assert f"ha-ingress-proxy-{built.payload.version}-1.dc1_ingress" in found


# --- the payload rules, without tools ----------------------------------------------------


def test_payload_refuses_role_independent_files_that_differ(tmp_path):
    nodes = tmp_path / "nodes"
    for name, text in (("a", "x\n"), ("b", "y\n")):
        (nodes / name / "etc/ha-ingress-proxy").mkdir(parents=True)
        (nodes / name / "etc/ha-ingress-proxy/haproxy.env").write_text(text)
        (nodes / f"{name}.manifest.json").write_text('{"etc/ha-ingress-proxy/haproxy.env": "0644"}\n')
    with pytest.raises(UserError) as exc:
        payload.role_independent(nodes)
    assert "payload: /etc/ha-ingress-proxy/haproxy.env: content differs between a and b, but it is not in layout.ROLE_FILES" in exc.value.lines


def test_payload_refuses_a_secret():
    with pytest.raises(UserError, match="looks like it holds a secret"):
        payload.check_no_secrets({"etc/ha-ingress-proxy/x.env": File(b"HAPROXY_STATS_PASSWORD=hunter22\n", 0o644)})
    payload.check_no_secrets({"etc/x": File(b"stats auth admin:\"${HAPROXY_STATS_PASSWORD}\"\n", 0o644)})


def test_payload_refuses_a_path_no_macro_covers():
    with pytest.raises(UserError, match="no RPM directory macro covers"):
        payload.dir_macro("opt/thing")


def test_release_names():
    assert packages.rpm_release(1, "dc1-ingress") == "1.dc1_ingress"
    assert packages.deb_version("0.1.0", 2, "dc1-ingress") == "0.1.0-2+dc1.ingress"
    with pytest.raises(UserError):
        packages.rpm_release(0, "x")


def test_own_units_get_the_systemd_scriptlets(built, tmp_path):
    """A unit of ours in the tree (the agent's) gets %systemd_post/preun/postun, with no spec change; never a
    restart on upgrade (haproxy and keepalived Require= the agent unit: %posttrans reapplies and reloads)."""
    unit = "usr/lib/systemd/system/ha-ingress-proxy-test.service"
    files = dict(built.payload.files)
    files[unit] = File(b"[Unit]\nDescription=test\n\n[Service]\nExecStart=/usr/bin/true\n", 0o644)
    pl = dataclasses.replace(built.payload, files=files)
    assert "ha-ingress-proxy-test.service" in pl.units()
    rpm = packages.rpm_from_payload(pl, tmp_path / "out", lint=False).path
    scripts = sh("rpm", "-qp", "--scripts", rpm)
    assert not packages.UNEXPANDED.search(scripts)
    for tag in ("POSTIN", "PREUN"):
        assert "ha-ingress-proxy-test.service" in sh("rpm", "-qp", "--qf", f"%{{{tag}}}", rpm), tag
    assert "ha-ingress-proxy-test.service" not in sh("rpm", "-qp", "--qf", "%{POSTUN}", rpm)  # no try-restart of it
    assert "/usr/bin/ha-ingress-proxy apply" in sh("rpm", "-qp", "--qf", "%{POSTTRANS}", rpm)
    assert f"/{unit}" in rpm_files(rpm)
    deb = packages.deb_from_payload(pl, tmp_path / "out").path
    sh("dpkg-deb", "-e", deb, tmp_path / "ctrl")
    for script in ("postinst", "prerm"):
        assert "ha-ingress-proxy-test.service" in (tmp_path / "ctrl" / script).read_text(), script
