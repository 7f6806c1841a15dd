"""The three parts and the one direction of their imports.

- ha_ingress_proxy (the node runtime; the only part that ships) imports neither of the others;
- ha_ingress_build (packages, lint, cloud-init, image) imports the runtime, never the lab;
- ha_ingress_lab (netns lab, scenarios, benchmarks, VM helpers) may import both;
- and no import cycle anywhere, between modules of any part.

Read from the sources with ast (every import, also inside functions), so a lazy import cannot hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

SRC = ROOT / "src"
PARTS = ("ha_ingress_proxy", "ha_ingress_build", "ha_ingress_lab")
# part -> the parts it may import (besides itself)
ALLOWED = {
    "ha_ingress_proxy": set(),
    "ha_ingress_build": {"ha_ingress_proxy"},
    "ha_ingress_lab": {"ha_ingress_proxy", "ha_ingress_build"},
}
THIRD_PARTY_DEV_ONLY = {"testinfra", "invoke", "pytest", "paramiko", "hypothesis", "build"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute (relative imports resolved against its package)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.add(mod)
            # `from pkg import module` imports pkg.module when it is one of ours
            for alias in node.names:
                candidate = f"{mod}.{alias.name}"
                if (SRC / Path(*candidate.split("."))).with_suffix(".py").exists():
                    found.add(candidate)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for part in PARTS for p in (SRC / part).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def test_the_three_parts_exist():
    for part in PARTS:
        assert (SRC / part / "__init__.py").is_file(), part


def test_imports_point_one_way():
    wrong = []
    for part in PARTS:
        for path in sorted((SRC / part).rglob("*.py")):
            for mod in sorted(_imports(path)):
                top = mod.split(".")[0]
                if top in PARTS and top != part and top not in ALLOWED[part]:
                    wrong.append(f"{path.relative_to(ROOT)} imports {mod} ({part} must not import {top})")
    assert not wrong, "\n".join(wrong)


def test_runtime_and_build_import_no_dev_only_package():
    wrong = [
        f"{path.relative_to(ROOT)} imports {mod}"
        for part in ("ha_ingress_proxy", "ha_ingress_build")
        for path in sorted((SRC / part).rglob("*.py"))
        for mod in sorted(_imports(path))
        if mod.split(".")[0] in THIRD_PARTY_DEV_ONLY
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if nxt == node:
                continue
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)
