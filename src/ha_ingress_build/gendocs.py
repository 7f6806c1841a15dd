"""The generated parts of docs/, from the code that owns the facts: `./invokew docs`.

GENERATED maps each document to the function that returns it with its
generated part brought up to date:

- docs/inventory.md: the key reference, from the inventory model (inventory_doc.py);
- docs/layout.md: the table of node paths, from ha_ingress_proxy.layout, between

      <!-- BEGIN GENERATED: layout (./invokew docs) -->
      <!-- END GENERATED: layout -->

- docs/architecture.md: the module tree, one line per module of src/ (the first
  line of its docstring), between the same markers named `modules`.

`update()` rewrites what is stale; `stale()` names it, and the tests fail on it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from ha_ingress_build import inventory_doc
from ha_ingress_proxy import layout
from ha_ingress_proxy.errors import UserError

PROJECT = Path(__file__).resolve().parents[2]
COMMAND = "./invokew docs"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN GENERATED: {name} ({COMMAND}) -->\n", f"<!-- END GENERATED: {name} -->\n"


def splice(text: str, name: str, body: str) -> str:
    """text with the generated part `name` replaced by body. UserError when its marker lines are missing."""
    begin, end = _markers(name)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise UserError(f"no lines {begin.strip()!r} ... {end.strip()!r} to put the generated {name} part between")
    return text[: i + len(begin)] + body + text[j:]


PARTS = ("ha_ingress_proxy", "ha_ingress_build", "ha_ingress_lab")


def module_tree(src: Path = PROJECT / "src") -> str:
    """One line per module of the three parts: its path and the first line of its docstring."""
    lines = []
    for part in PARTS:
        for path in sorted((src / part).rglob("*.py")):
            doc = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
            first = doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"
            lines.append(f"    {path.relative_to(src).as_posix():<42} {first}")
    return "\n".join(lines) + "\n"


# document (relative to the project) -> its text with the generated part current
GENERATED: dict[str, Callable[[str], str]] = {
    "docs/inventory.md": inventory_doc.updated,
    "docs/layout.md": lambda text: splice(text, "layout", layout.markdown_table()),
    "docs/architecture.md": lambda text: splice(text, "modules", module_tree()),
}


def _current(project: Path, doc: str) -> tuple[Path, str, str]:
    path = project / doc
    text = path.read_text()
    try:
        return path, text, GENERATED[doc](text)
    except UserError as exc:
        raise UserError(*(f"{doc}: {line}" for line in exc.lines)) from None


def stale(project: Path = PROJECT) -> list[str]:
    """One line per document whose generated part differs from what the code renders now."""
    out = []
    for doc in sorted(GENERATED):
        _path, text, new = _current(project, doc)
        if new != text:
            out.append(f"{doc}: its generated part is stale; run `{COMMAND}`")
    return out


def update(project: Path = PROJECT) -> list[str]:
    """Rewrite every stale generated part; the documents that changed."""
    changed = []
    for doc in sorted(GENERATED):
        path, text, new = _current(project, doc)
        if new != text:
            path.write_text(new)
            changed.append(doc)
    return changed
