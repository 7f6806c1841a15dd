"""NodePlan -> file tree (paths as on the node), written atomically and byte-stably.

Templates live in templates/ laid out as on the node: templates/etc/x.conf.j2
renders to etc/x.conf. They see only the plan (StrictUndefined), hold loops and
ifs only, and every sequence they iterate is already sorted by the plan.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ha_ingress_proxy import layout
from ha_ingress_proxy.agent import files
from ha_ingress_proxy.inventory import Site, to_dict
from ha_ingress_proxy.plan import NodePlan, plan

TEMPLATE_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class File:
    content: bytes
    mode: int


Tree = dict[str, File]


def environment(directory: Path = TEMPLATE_DIR) -> jinja2.Environment:
    """The one Jinja2 set-up for every template of the project: strict, whitespace-exact."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def template_names() -> list[str]:
    names = []
    for path in sorted(TEMPLATE_DIR.rglob("*.j2")):
        names.append(path.relative_to(TEMPLATE_DIR).as_posix())
    return names


def render(node_plan: NodePlan, only: tuple[str, ...] | None = None) -> Tree:
    """Render every node template (or only the given target paths) for one plan; modes from the layout."""
    env = environment()
    context = {field: getattr(node_plan, field) for field in node_plan.__dataclass_fields__}
    tree: Tree = {}
    for name in template_names():
        rel = name[: -len(".j2")]
        if only is not None and rel not in only:
            continue
        if not layout.renders_for(rel, node_plan.bgp is not None):
            continue
        text = env.get_template(name).render(**context)
        tree[rel] = File(text.encode("utf-8"), layout.mode(rel))
    return tree


def site_model(site: Site) -> File:
    """The validated site as JSON: what the boot-time agent plans from on the node."""
    text = json.dumps(to_dict(site), indent=2, sort_keys=True) + "\n"
    return File(text.encode("utf-8"), layout.mode(layout.SITE_MODEL))


def render_node(site: Site, node_name: str) -> Tree:
    tree = render(plan(site, node_name))
    tree[layout.SITE_MODEL] = site_model(site)
    return tree


def render_site(site: Site) -> dict[str, Tree]:
    """Every node's tree, by node name."""
    return {node.name: render_node(site, node.name) for node in site.nodes}


def manifest(tree: Tree) -> dict[str, str]:
    """path -> octal mode, for packagers and tests (git does not keep modes)."""
    return {rel: f"{tree[rel].mode:04o}" for rel in sorted(tree)}


def write_tree(tree: Tree, root: Path) -> dict[str, bool]:
    """The one tree writer: every file under root with its mode; rel -> whether it was written.

    Each file through files.write_atomic (created 0600, renamed into place, skipped when
    it already holds those bytes and that mode), so a secret in a tree is never briefly
    readable and a reader never sees half a file. Parent directories are made as needed.
    """
    Path(root).mkdir(parents=True, exist_ok=True)
    return {rel: files.write_atomic(Path(root), rel, tree[rel].content, tree[rel].mode) for rel in sorted(tree)}


def replace_dir(build: Callable[[Path], None], dest: Path) -> None:
    """Build a directory next to dest, then swap it in: readers see old or new, never half.

    build(tmpdir) fills the temporary directory; if it raises, dest is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    try:
        os.chmod(tmp, 0o755)
        build(tmp)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rename(dest, old / "x")
            os.rename(tmp, dest)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_site(site: Site, out_dir: Path) -> dict[str, Tree]:
    """Render every node of the site into out_dir/nodes/<node>/, atomically."""
    trees = render_site(site)

    def fill(tmp: Path) -> None:
        for name in sorted(trees):
            node_dir = tmp / name
            node_dir.mkdir()
            write_tree(trees[name], node_dir)
            (tmp / f"{name}.manifest.json").write_text(json.dumps(manifest(trees[name]), indent=2, sort_keys=True) + "\n")

    replace_dir(fill, Path(out_dir) / "nodes")
    return trees


__all__ = ["File", "Tree", "render", "render_node", "render_site", "write_site", "write_tree", "replace_dir", "manifest"]
