"""The code's shape: dependency direction, no import cycles, no private names used across modules.

Every import counts, including ones inside functions and under ``TYPE_CHECKING``: a cycle there is
still two modules that each need the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("topologies", "controllers", "experiments")
LAYER = {"topologies": 0, "controllers": 1, "experiments": 2}  # may import only lower or equal


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import of a project module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            names = [a.name for a in node.names]
            # ``from pkg import submodule`` depends on the submodule, not on pkg's __init__
            subs = [n for n in names if f"{base}.{n}" in MODULES]
            rest = [n for n in names if n not in subs]
            out += [(f"{base}.{n}", [], node.lineno) for n in subs]
            if rest:
                out.append((base, rest, node.lineno))
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_dependencies_point_one_way() -> None:
    wrong = [f"{name}:{line} imports {target}" for name, edges in GRAPH.items()
             for target, _names, line in edges
             if LAYER[target.split(".")[0]] > LAYER[name.split(".")[0]]]
    assert not wrong, "topologies <- controllers <- experiments is broken:\n" + "\n".join(wrong)


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _names, _line in GRAPH.get(v, []):
            if w not in MODULES or w == v:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in MODULES:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_no_private_names_across_modules() -> None:
    used = []
    for name, path in MODULES.items():
        for target, names, line in GRAPH[name]:
            used += [f"{name}:{line} imports {target}.{n}" for n in names
                     if n.startswith("_") and not n.startswith("__") and target != name]
        tree = ast.parse(path.read_text())
        aliases = {a.asname or a.name: a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for a in node.names if a.name.split(".")[0] in PACKAGES}
        aliases |= {a.asname or a.name: f"{node.module}.{a.name}" for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module for a in node.names
                    if f"{node.module}.{a.name}" in MODULES}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                used.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not used, "private names used from another module:\n" + "\n".join(used)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_folder_is_a_package(package: str) -> None:
    """Definition folders (experiment.toml) are the only non-package folders under experiments/."""
    for folder in (REPO / package).rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
            assert (folder / "__init__.py").is_file(), folder
