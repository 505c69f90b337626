"""The dependency direction of DESIGN.md §8, checked from the source: no import cycle among the
project's modules (imports inside functions and under `if TYPE_CHECKING:` count: hiding a cycle
there does not break it), and no package importing one it must not know about."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("societas", "llms", "simulator", "researcher", "reports", "prompts")

# Which project packages each package may import (DESIGN.md §8: prompts, llms <- simulator <-
# researcher -> reports; nothing imports researcher but the command line). `societas` holds the
# errors and run folders everyone uses, and the CLI that wires the packages together.
ALLOWED = {
    "prompts": set(),
    "llms": {"prompts", "societas"},
    "simulator": {"prompts", "llms", "societas"},
    "reports": {"societas"},
    "researcher": {"prompts", "llms", "simulator", "reports", "societas"},
    "societas": set(PACKAGES),
}
# The modules of `societas` that only the CLI layer is: they may import anything.
CLI_MODULES = {"societas.cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """A package facade that imports on first use (`_EXPORTS = {"name": "pkg.module"}` behind a
    module `__getattr__`) still depends on each module it names."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            value = ast.literal_eval(node.value)
            return {str(k): str(v) for k, v in value.items()}
    return {}


def import_graph() -> dict[str, set[str]]:
    sources = _sources()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in sources.items()}
    exports = {name: _lazy_exports(tree) for name, tree in trees.items()}
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        is_package = sources[name].name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = []
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in sources:
                        targets.append(full)
                    elif alias.name in exports.get(base, {}):
                        targets.append(exports[base][alias.name])
                    else:
                        targets.append(base)
            for target in targets:
                while target and target not in sources:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    for package, names in exports.items():
        graph[package] |= set(names.values())
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_project_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (imports inside functions count):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_packages_import_only_in_the_design_direction():
    wrong = []
    for module, targets in import_graph().items():
        package = module.split(".")[0]
        if module in CLI_MODULES:
            continue
        for target in targets:
            other = target.split(".")[0]
            if other != package and other not in ALLOWED[package]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against DESIGN.md §8:\n" + "\n".join(sorted(wrong))


def test_private_names_stay_in_their_module():
    """A name another module needs is public; `from m import _x` reaches into m's insides."""
    reaching = []
    for name, path in _sources().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        reaching.append(f"{name}: from {node.module} import {alias.name}")
    assert not reaching, "\n".join(reaching)


def test_researcher_reaches_the_simulator_only_through_its_facade():
    """Mesa's way: `simulator/__init__.py` names the public API, and the pipeline imports that."""
    graph = import_graph()
    facade = _lazy_exports(ast.parse((ROOT / "simulator" / "__init__.py").read_text()))
    public = set(facade.values()) | {"simulator"}
    reaching = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith("researcher")
        for target in targets
        if target.startswith("simulator") and target not in public
    ]
    assert not reaching, "\n".join(sorted(reaching))


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import a.b\n", {"a.b"}),
        ("def f():\n    from a import b\n", {"a.b"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a import b\n", {"a.b"}),
    ],
)
def test_the_scan_sees_imports_inside_functions_and_type_only_ones(tmp_path, monkeypatch, source, expected):
    """The checker itself: a cycle hidden in a function or behind TYPE_CHECKING is found."""
    for package in ("a", "c"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "a" / "b.py").write_text("")
    (tmp_path / "c" / "m.py").write_text(source)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGES", ("a", "c"))
    assert import_graph()["c.m"] == expected


def test_a_cycle_is_reported():
    assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]
