"""The package's imports point down: no cycle between vt_middleware's packages, and the
live-call runtime never imports the stages that build what it runs.

Every import counts, including those inside functions (read from the source with ``ast``);
imports under ``if TYPE_CHECKING:`` do not run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vt_middleware"

# A stage never imports a stage above it. Root modules (config, errors, health, ...) are leaves.
LAYERS = ["store", "runtime", "capture", "select", "synthesize", "train", "evolve"]
# Above every stage: the package's own API (``import vt_middleware``), the user-facing tools, the
# standalone server and the seed-compatible re-export modules.
TOP = {
    "vt_middleware",
    "dashboards",
    "api",
    "cli",
    "server",
    "extractor",
    "synthesizer",
    "pipeline",
    "dashboard",
    "cost_guard",
}
# Stages that still import one above them; strict xfail: fixing one makes its test say so.
KNOWN_UPWARD: Dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path) -> Iterator[str]:
    """Absolute names of the vt_middleware modules ``path`` imports, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    todo: List[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"), str(path))]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)  # ``from . import x``
        todo.extend(ast.iter_child_nodes(node))


def unit(module: str) -> str:
    """The package a module belongs to: ``vt_middleware.runtime.sync`` -> ``runtime``; a root
    module (``vt_middleware.config``) is its own unit; so is the package itself."""
    parts = module.split(".")
    if parts[0] != "vt_middleware":
        return ""
    if len(parts) == 1:
        return "vt_middleware"
    candidate = PACKAGE / parts[1]
    return parts[1] if candidate.is_dir() or (PACKAGE / f"{parts[1]}.py").exists() else ""


def package_graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit(module_name(path))
        for target in map(unit, imported_modules(path)):
            if target and target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    import vt_middleware.runtime.active as active

    found = set(imported_modules(Path(active.__file__)))
    assert "vt_middleware.runtime.hooks" in found  # a relative import at module level
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Cycles still to break (none known).
KNOWN_CYCLES: List[List[str]] = []


def test_no_import_cycle_between_packages():
    assert [cycle for cycle in cycles(package_graph()) if cycle not in KNOWN_CYCLES] == []


@pytest.mark.xfail(bool(KNOWN_CYCLES), strict=True, reason=", ".join("/".join(c) for c in KNOWN_CYCLES))
def test_known_cycles_are_broken():
    assert cycles(package_graph()) == []


@pytest.mark.parametrize(
    "stage",
    [
        pytest.param(stage, marks=pytest.mark.xfail(strict=True, reason=KNOWN_UPWARD[stage]))
        if stage in KNOWN_UPWARD
        else stage
        for stage in LAYERS
    ],
)
def test_each_stage_imports_only_leaves_and_lower_stages(stage):
    above = set(LAYERS[LAYERS.index(stage) + 1 :]) | TOP
    assert sorted(target for target in package_graph().get(stage, ()) if target in above) == []
