"""Generated parts of the docs, from the code that owns the facts.

A generated part sits between two marker lines in its document:

    <!-- BEGIN GENERATED: <name> (python -m ha_ingress_build.gendocs) -->
    ...
    <!-- END GENERATED: <name> -->

GENERATED maps each name to its document and the function that renders it.
`python -m ha_ingress_build.gendocs` rewrites every part; `--check` only
reports the stale ones (exit 1), which is what the tests do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ha_ingress_proxy import layout
from ha_ingress_proxy.errors import UserError

PROJECT = Path(__file__).resolve().parents[2]
COMMAND = "python -m ha_ingress_build.gendocs"

# name -> (document, relative to the project; renderer)
GENERATED: dict[str, tuple[str, Callable[[], str]]] = {
    "layout": ("docs/layout.md", layout.markdown_table),
}


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN GENERATED: {name} ({COMMAND}) -->\n", f"<!-- END GENERATED: {name} -->\n"


def splice(text: str, name: str, body: str, where: str) -> str:
    """text with the part `name` replaced by body. UserError when the markers are missing or out of order."""
    begin, end = _markers(name)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise UserError(f"{where}: no '{begin.strip()}' ... '{end.strip()}' lines to put the generated {name} part between")
    return text[: i + len(begin)] + body + text[j:]


def stale(project: Path = PROJECT) -> list[str]:
    """The documents whose generated parts differ from what the code renders now."""
    out = []
    for name, (doc, render) in sorted(GENERATED.items()):
        path = project / doc
        text = path.read_text()
        if splice(text, name, render(), doc) != text:
            out.append(f"{doc}: the generated {name} part is stale; run `{COMMAND}`")
    return out


def update(project: Path = PROJECT) -> list[str]:
    """Rewrite every generated part; the documents that changed."""
    changed = []
    for name, (doc, render) in sorted(GENERATED.items()):
        path = project / doc
        text = path.read_text()
        new = splice(text, name, render(), doc)
        if new != text:
            path.write_text(new)
            changed.append(doc)
    return changed


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        problems = stale()
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    if argv:
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    for doc in update():
        print(f"{doc}: rewritten")
    return 0


if __name__ == "__main__":
    from ha_ingress_proxy.cli import guarded

    sys.exit(guarded(lambda: main(sys.argv[1:]), prog="gendocs"))
