"""The edge package's own import graph: no cycle between its modules (lazy imports inside functions and
TYPE_CHECKING blocks included, since they are loops too), and none of torch, FastAPI or the store."""

from __future__ import annotations

import ast
from pathlib import Path

import veil.edge

EDGE = Path(veil.edge.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, wherever the import statement sits."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def edge_graph() -> dict[str, set[str]]:
    modules = {f"veil.edge.{p.stem}": p for p in EDGE.glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in imports_of(path) if m in modules} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph[node]):
            if cycle := visit(target):
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if cycle := visit(start):
            return cycle
    return None


def test_edge_modules_import_each_other_one_way() -> None:
    graph = edge_graph()
    assert "veil.edge.preview" in graph["veil.edge.pipeline"]  # the graph is read, not empty
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_edge_imports_no_torch_fastapi_or_store() -> None:
    for path in EDGE.glob("*.py"):
        forbidden = {
            m for m in imports_of(path) if m.split(".")[0] in ("torch", "fastapi") or m.startswith("veil.store")
        }
        assert not forbidden, f"{path.name} imports {forbidden}"
