"""One module owns the node's file layout (ha_ingress_proxy.layout); nothing drifts from it.

The Python code imports its paths from layout.py. The files that cannot (the
RPM spec, Packer's variables, the provisioning scripts, templates, maintainer
scripts, cloud-init user-data, docs) are read here and compared with it.
"""

from __future__ import annotations

import fnmatch
import re

import pytest

from ha_ingress_build import gendocs, payload
from ha_ingress_proxy import inventory, layout, render
from ha_ingress_proxy.errors import UserError

from ..conftest import EXAMPLES, MODES, ROOT

# Everything that names node paths and is not Python importing layout.py, plus the Python
# (a literal product path there is a second copy of a layout fact).
SCANNED = [
    *sorted((ROOT / "src").rglob("*.py")),
    *sorted((ROOT / "src" / "ha_ingress_proxy" / "templates").rglob("*.j2")),
    *sorted((ROOT / "rpm").iterdir()),
    *sorted((ROOT / "deb").iterdir()),
    *sorted((ROOT / "scriptlets").iterdir()),
    *sorted((ROOT / "packer").glob("*.pkr.hcl")),
    *sorted((ROOT / "image").rglob("*.sh")),
    *sorted((ROOT / "cloud-init").iterdir()),
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "README.md",
]
# What the RPM spec's directory macros are on every EL release (rpm --eval).
RPM_MACROS = {
    "%{name}": layout.NAME,
    "%{_sysconfdir}": "/etc",
    "%{_unitdir}": "/usr/lib/systemd/system",
    "%{_presetdir}": "/usr/lib/systemd/system-preset",
    "%{_sysctldir}": "/usr/lib/sysctl.d",
    "%{_libexecdir}": "/usr/libexec",
    "%{_datadir}": "/usr/share",
    "%{_bindir}": "/usr/bin",
    "%{_prefix}": "/usr",
}
PRODUCT_PATH = re.compile(r"/(?:etc|usr|run|var|proc)/[\w.*/-]*")


def _product_paths(text: str) -> set[str]:
    for macro, value in RPM_MACROS.items():
        text = text.replace(macro, value)
    found = set()
    for m in PRODUCT_PATH.finditer(text):
        path = m.group(0).rstrip("./")
        if layout.NAME in path or "ha-ingress" in path:
            found.add(path)
    return found


def _known(path: str) -> bool:
    """A layout path, a path below a directory row, an ancestor directory of a row, or a glob matching a row."""
    rel = path.strip("/")
    if "*" in rel:
        return any(fnmatch.fnmatchcase(p.path, rel) for p in layout.PATHS)
    try:
        layout.entry(rel)
        return True
    except KeyError:
        return any(p.path.startswith(rel + "/") for p in layout.PATHS)


def test_rows_are_well_formed():
    paths = [p.path for p in layout.PATHS]
    assert len(paths) == len(set(paths)), "a path listed twice"
    for p in layout.PATHS:
        assert p.path == p.path.strip("/") and p.path, p
        assert "|" not in p.what and "\n" not in p.what, f"{p.path}: breaks the markdown table"
        assert p.mode == "-" or re.fullmatch(r"0[0-7]{3}", p.mode), p
        assert not p.role_dependent or p.writer is layout.Writer.AGENT, f"{p.path}: only the agent writes role-dependent files"


@pytest.mark.parametrize("mode", MODES)
def test_every_rendered_file_is_a_row_with_its_writer_and_mode(mode):
    site = inventory.load(EXAMPLES / f"{mode}.yaml")
    for tree in render.render_site(site).values():
        for rel, f in tree.items():
            row = layout.BY_PATH.get(rel)
            assert row is not None, f"/{rel}: rendered but not in layout.PATHS"
            assert row.writer is (layout.Writer.AGENT if rel in layout.ROLE_FILES else layout.Writer.PACKAGE), rel
            assert f"{f.mode:04o}" == row.mode, rel


def test_every_package_file_row_is_rendered_or_built():
    """A package row is a rendered file, the launcher, or a directory the build fills: no stale rows."""
    rendered = set()
    for example in ("active-active", "bgp"):  # mode: bgp ships FRR's files, the VRRP modes keepalived.conf
        site = inventory.load(EXAMPLES / f"{example}.yaml")
        rendered |= set(render.render_node(site, site.nodes[0].name))
    for p in layout.PATHS:
        if p.writer is layout.Writer.PACKAGE and not p.directory:
            assert p.path in rendered or p.path == layout.LAUNCHER, f"/{p.path}: a package row nothing renders"
        if p.writer is layout.Writer.AGENT and p.path in rendered:
            assert p.role_dependent, p.path


def test_role_files_are_exactly_the_files_that_differ_between_nodes():
    """haproxy.cfg is role-dependent too (stats binds the node's address); docs/layout.md once said otherwise."""
    differ = set()
    for mode in MODES:
        trees = list(render.render_site(inventory.load(EXAMPLES / f"{mode}.yaml")).values())
        for other in trees[1:]:
            differ |= {rel for rel in trees[0] if trees[0][rel] != other[rel]}
    assert differ == set(layout.ROLE_FILES)
    assert layout.ROLE_FILES[0] == layout.KEEPALIVED_CONF  # the agent writes it last, removes it on refusal


def test_a_path_without_a_row_gets_no_mode():
    for rel in ("etc/ha-ingress-proxy/new.conf", "usr/lib/systemd/system/other.service", "usr/lib/ha-ingress-proxy/python"):
        with pytest.raises(KeyError):
            layout.mode(rel)
    assert layout.mode(layout.CHECK_SCRIPT) == 0o755
    assert layout.mode(layout.SECRETS_ENV) == 0o600


def test_runtime_modules_are_exactly_the_node_runtime():
    pkg = ROOT / "src" / "ha_ingress_proxy"
    on_disk = {p.relative_to(pkg).with_suffix("").as_posix() for p in pkg.rglob("*.py")}
    assert on_disk == set(layout.RUNTIME_MODULES)
    shipped = payload.python_package()  # refuses a module off the allowlist
    assert f"{layout.PYTHON_DIR}/ha_ingress_proxy/layout.py" in shipped


def test_packer_manifest_paths_are_the_layouts():
    text = (ROOT / "packer" / "variables.pkr.hcl").read_text()
    block = re.search(r'variable "manifest_paths" \{.*?default = \[(.*?)\]', text, re.S)
    assert block, "packer/variables.pkr.hcl: no manifest_paths default"
    assert re.findall(r'"([^"]+)"', block.group(1)) == layout.manifest_paths()


def test_spec_copies_exactly_the_payload_directory_macros():
    """The spec's %hip_copy lines and payload.DIR_MACROS are one list written twice: they must agree."""
    spec = (ROOT / "rpm" / "ha-ingress-proxy.spec").read_text()
    copies = re.findall(r"^%hip_copy (\S+) (\S+)$", spec, re.M)
    assert sorted(copies) == sorted((key, macro) for _prefix, key, macro in payload.DIR_MACROS)
    assert len(copies) == len(set(copies))
    for prefix, _key, macro in payload.DIR_MACROS:
        expanded = macro
        for name, value in RPM_MACROS.items():
            expanded = expanded.replace(name, value)
        assert expanded == "/" + prefix, (prefix, macro)


def test_every_package_path_has_a_directory_macro():
    for p in layout.PATHS:
        if p.writer is layout.Writer.PACKAGE or p.role_dependent:
            payload.dir_macro(p.path + "/x" if p.directory else p.path)  # UserError names the path


def test_provision_scripts_write_the_layouts_paths():
    manifest = (ROOT / "image" / "provision" / "write-manifest.sh").read_text()
    out_dir = re.search(r"^OUT_DIR=(\S+)$", manifest, re.M).group(1)
    out = re.search(r"^OUT=(\S+)$", manifest, re.M).group(1).replace("$OUT_DIR", out_dir)
    assert out == layout.shown(layout.IMAGE_MANIFEST)
    install = (ROOT / "image" / "provision" / "install-package.sh").read_text()
    assert re.search(r"^REPO_FILE=(\S+)$", install, re.M).group(1) == layout.shown(layout.IMAGE_YUM_REPO)


def test_the_launcher_runs_the_runtime_from_the_layouts_python_dir():
    assert f'sys.path.insert(0, "/{layout.PYTHON_DIR}")' in payload.LAUNCHER
    spec = (ROOT / "rpm" / "ha-ingress-proxy.spec").read_text()
    assert "pythondir" not in spec, "the spec must not name the python directory again; the launcher carries it"


def test_no_file_names_a_product_path_the_layout_lacks():
    unknown = []
    for path in SCANNED:
        if not path.is_file() or path == ROOT / "src" / "ha_ingress_proxy" / "layout.py":
            continue
        for found in sorted(_product_paths(path.read_text(errors="replace"))):
            if not _known(found):
                unknown.append(f"{path.relative_to(ROOT)}: {found}")
    assert not unknown, "paths not in ha_ingress_proxy/layout.py:\n" + "\n".join(unknown)


@pytest.mark.parametrize("mode", MODES)
def test_rendered_files_name_only_layout_paths(mode):
    """What templates compose ({{ config_dir }}/x) is checked in the output, where it is whole."""
    unknown = set()
    for node, tree in render.render_site(inventory.load(EXAMPLES / f"{mode}.yaml")).items():
        for rel, f in tree.items():
            unknown |= {f"{node}: /{rel}: {p}" for p in _product_paths(f.content.decode()) if not _known(p)}
    assert not unknown, "\n".join(sorted(unknown))


def test_the_scan_would_catch_a_stray_path():
    assert _product_paths("ExecStart=%{_bindir}/%{name}-helper --x") == {"/usr/bin/ha-ingress-proxy-helper"}
    assert not _known("/usr/bin/ha-ingress-proxy-helper")
    assert _known("/usr/lib/sysctl.d/*-ha-ingress-proxy.conf")
    assert not _known("/usr/lib/sysctl.d/*-ha-ingress-proxy.cfg")
    assert _known("/usr/lib/ha-ingress-proxy")  # an ancestor of the python dir
    assert _known("/usr/lib/ha-ingress-proxy/python/ha_ingress_proxy/templates")


def test_python_code_takes_node_paths_from_the_layout():
    """No module but layout.py spells one of the layout's product paths as a literal."""
    literals = {p.path for p in layout.PATHS if layout.NAME in p.path} | {p.shown for p in layout.PATHS if layout.NAME in p.path}
    offenders = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        if path.name == "layout.py":
            continue
        text = path.read_text()
        for lit in sorted(literals):
            if re.search(rf"[\"']{re.escape(lit)}[\"']", text):
                offenders.append(f"{path.relative_to(ROOT)}: {lit!r}")
    assert not offenders, "\n".join(offenders)


def test_docs_layout_table_is_generated_from_the_layout():
    assert gendocs.stale() == []
    text = (ROOT / "docs" / "layout.md").read_text()
    for p in layout.PATHS:
        assert f"`{p.shown}" in text, p.path


def test_a_stale_generated_part_is_reported_and_rewritten(tmp_path):
    (tmp_path / "docs").mkdir()
    for doc in gendocs.GENERATED:
        (tmp_path / doc).write_text((ROOT / doc).read_text())
    doc = tmp_path / "docs" / "layout.md"
    doc.write_text(doc.read_text().replace("| `/run/ha-ingress-proxy/state.json`", "| `/run/old/state.json`"))
    assert gendocs.stale(tmp_path) == [f"docs/layout.md: its generated part is stale; run `{gendocs.COMMAND}`"]
    assert gendocs.update(tmp_path) == ["docs/layout.md"]
    assert gendocs.stale(tmp_path) == []
    assert doc.read_text() == (ROOT / "docs" / "layout.md").read_text()
    doc.write_text("# no markers\n")
    with pytest.raises(UserError) as exc:
        gendocs.stale(tmp_path)
    assert exc.value.lines[0].startswith("docs/layout.md: no lines '<!-- BEGIN GENERATED: layout")
