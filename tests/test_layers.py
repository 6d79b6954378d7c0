"""The import graph keeps the layers: the library never imports the agents or the benchmarks, and
no module or package of the library imports one that (transitively) imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (lazy imports included:
    an import deferred into a function still makes the dependency)."""
    modules = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t != name and t.split(".")[0] in ("agents",
                                                                              "benchmarks",
                                                                              package)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph.get(node, ()):
            if succ not in graph:
                continue
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package(module), set()).update(
            package(t) for t in targets if package(t) != package(module))
    return packages


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.fixture(scope="module")
def library() -> dict[str, set[str]]:
    return import_graph("gan_prune_env")


def test_library_never_imports_agents_or_benchmarks(library):
    upward = {m: sorted(t for t in targets if t.split(".")[0] != "gan_prune_env")
              for m, targets in library.items()}
    assert {m: t for m, t in upward.items() if t} == {}


def test_no_import_cycles_between_modules_or_packages(library):
    assert cycles(library) == []
    assert cycles(_package_graph(library)) == []


def test_the_family_registry_sits_below_checkpoints_and_training(library):
    assert not {t for t in library["gan_prune_env.families"] if t.startswith("gan_prune_env.")
                and not t.startswith("gan_prune_env.models")}


GAME_INTERNALS = ("maskers", "prepared")
"""PruningGame attributes that are its implementation: agents, the CLI and the benchmarks
that compare methods use its public API (``task``, ``train_pool``, ``soft_gates``, ...)."""
PROFILERS = {"benchmarks/env_speed.py"}  # times the implementation itself


def test_agents_and_benchmarks_use_the_game_through_its_public_api():
    found = []
    for path in [*(ROOT / "agents").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        if str(path.relative_to(ROOT)) in PROFILERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in GAME_INTERNALS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert not found, found
