"""The package's shape: no import cycle anywhere in `src/veil` (lazy imports inside functions count too), and
imports only point down the layers

    cli / api / web  ->  services  ->  jobs  ->  vision / privacy / edge  ->  images  ->  store / security  ->  config

(a layer may import its own and any lower layer). Nothing below `api` imports FastAPI or Starlette.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "veil"
LAYERS = {"cli": 6, "api": 6, "web": 6, "services": 5, "jobs": 4, "vision": 3, "privacy": 3, "edge": 3,
          "images": 2, "store": 1, "security": 1}  # fmt: skip
WEB_FRAMEWORKS = ("fastapi", "starlette")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SRC.rglob("*.py")}


def _owner(name: str) -> str | None:
    """The Veil module `name` refers to (a module, or the module defining an imported attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> tuple[set[str], set[str]]:
    """(Veil modules, other top-level packages) imported anywhere in the module, functions included."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    veil, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            names.append(base)
        else:
            continue
        for name in names:
            if name.split(".")[0] == "veil":
                owner = _owner(name)
                if owner and owner != module:
                    veil.add(owner)
            else:
                other.add(name.split(".")[0])
    return veil, other


def graph() -> dict[str, set[str]]:
    """Each Veil module → the Veil modules it imports."""
    return {module: imports(module)[0] for module in MODULES}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def test_the_walk_sees_the_package() -> None:
    edges = graph()
    assert len(MODULES) > 100
    assert "veil.api.customvision" in edges["veil.api.app"]  # the walk finds real imports...
    assert "veil.images.ingest" in edges["veil.services.ingest"]
    assert "veil.privacy.detectors" in edges["veil.services.ingest"]  # ...lazy ones inside functions too


def test_no_import_cycle() -> None:
    try:
        TopologicalSorter(graph()).prepare()
    except CycleError as cycle:
        raise AssertionError(f"import cycle: {' -> '.join(cycle.args[1])}") from None


def test_imports_point_down_the_layers() -> None:
    upward = [(a, b) for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert not upward, "imports against the layers (cli/api/web -> services -> jobs -> vision/privacy/edge -> " \
        f"images -> store/security): {sorted(upward)}"  # fmt: skip


def test_nothing_below_the_api_imports_a_web_framework() -> None:
    below = [m for m in MODULES if layer(m) < LAYERS["api"] and m != "veil"]
    offenders = sorted(m for m in below if imports(m)[1] & set(WEB_FRAMEWORKS))
    assert not offenders, f"FastAPI/Starlette imported below the API: {offenders}"
