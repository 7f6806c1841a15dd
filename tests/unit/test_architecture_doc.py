"""docs/architecture.md stays true: its module tree is generated, and every module it names exists."""

from __future__ import annotations

import re

from ha_ingress_build import gendocs

from ..conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"


def test_module_tree_lists_every_module_once():
    tree = gendocs.module_tree()
    listed = [line.split()[0] for line in tree.splitlines()]
    on_disk = sorted(p.relative_to(ROOT / "src").as_posix() for part in gendocs.PARTS for p in (ROOT / "src" / part).rglob("*.py"))
    assert sorted(listed) == on_disk
    assert "(no docstring)" not in tree, "every module says what it is in its docstring's first line"


def test_architecture_doc_is_current_and_names_only_real_modules():
    assert "docs/architecture.md: its generated part is stale; run `./invokew docs`" not in gendocs.stale()
    text = DOC.read_text()
    named = set(re.findall(r"\b(ha_ingress_(?:proxy|build|lab)/[\w/]+\.py)", text))
    assert len(named) > 30
    missing = sorted(m for m in named if not (ROOT / "src" / m).is_file())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
    for part in gendocs.PARTS:
        assert f"`{part}`" in text
