"""docs/inventory.md's key reference, generated from the inventory model's key declarations.

The model classes in ha_ingress_proxy.inventory declare every key (check,
default, description); this module turns them into the Markdown table between
the two marker lines of docs/inventory.md. `./invokew docs` rewrites it;
tests/unit/test_inventory_doc.py fails when the committed page is stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.inventory import REQUIRED, Key, declared_keys

BEGIN = "<!-- key reference: generated from src/ha_ingress_proxy/inventory.py by `./invokew docs`; do not edit -->"
END = "<!-- end of key reference -->"


def _default(spec: Key) -> str:
    if spec.default is REQUIRED:
        return "required"
    if spec.default_doc is not None:
        return spec.default_doc
    if spec.model is not None:
        return "each key's default"
    return f"`{json.dumps(spec.default).strip(chr(34))}`"


def _type(spec: Key) -> str:
    if spec.many:
        return "list of mappings"
    if spec.model is not None:
        return "mapping"
    assert spec.check is not None
    return spec.check.type


def key_reference() -> str:
    """The key table as Markdown, markers included."""
    rows = [BEGIN, "| key | type | default | check | description |", "|---|---|---|---|---|"]
    for path, spec in declared_keys():
        check = spec.check.doc if spec.check is not None else "-"
        rows.append(f"| `{path}` | {_type(spec)} | {_default(spec)} | {check} | {spec.doc} |")
    rows.append(END)
    return "\n".join(rows) + "\n"


def updated(text: str) -> str:
    """The page with its key reference replaced by the current one."""
    try:
        head, rest = text.split(BEGIN + "\n", 1)
        _, tail = rest.split(END + "\n", 1)
    except ValueError:
        raise UserError(f"the page has no key reference between the lines {BEGIN!r} and {END!r}") from None
    return head + key_reference() + tail


def write(page: Path) -> bool:
    """Rewrite the key reference of the page in place; True when it changed."""
    text = page.read_text()
    new = updated(text)
    if new != text:
        page.write_text(new)
    return new != text
