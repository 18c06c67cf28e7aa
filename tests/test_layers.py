"""The package's layers, checked: imports only point down.

    function_app, shared.cli, shared.__main__   entry points
    shared.*  (pipeline, service, ...)          orchestration: what the app does
    shared.adapters.*                           one adapter per external system
    shared.core.*                               pure rules and formats

A module may import from its own layer and the ones below it, never from one above. The CLI
is an entry point like ``function_app`` (its ``work`` command hands jobs to the real queue
handlers), so entry points may import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = {"function_app", "shared.cli", "shared.__main__"}


def layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return 3
    if module == "shared.core" or module.startswith("shared.core."):
        return 0
    if module == "shared.adapters" or module.startswith("shared.adapters."):
        return 1
    return 2  # the rest of shared


def imported(source: str, importer: str) -> set[str]:
    """The app modules a module's source imports (anywhere in it, also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from shared import pipeline" imports the module shared.pipeline
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "function_app" or m.startswith("shared.")} - {importer}


def modules() -> dict[str, str]:
    sources = {"function_app": (ROOT / "function_app.py").read_text("utf-8")}
    for path in sorted((ROOT / "shared").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        sources[name] = path.read_text("utf-8")
    return sources


def upward_imports(importer: str, source: str, known: set[str]) -> list[str]:
    return sorted(
        f"{importer} (layer {layer(importer)}) imports {target} (layer {layer(target)})"
        for target in imported(source, importer)
        if target in known and layer(target) > layer(importer)
    )


def test_imports_only_point_down_the_layers() -> None:
    sources = modules()
    problems = [
        p for name, text in sources.items() for p in upward_imports(name, text, set(sources))
    ]
    assert problems == []


def test_every_layer_is_on_disk() -> None:
    layers = {layer(name) for name in modules()}
    assert layers == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("importer", "planted"),
    [
        ("shared.core.identifiers", "from shared.adapters import snapchat"),
        ("shared.core.layout", "from shared.service import schedule"),
        ("shared.adapters.runlog", "import shared.pipeline"),
        ("shared.pipeline", "def late():\n    import function_app\n"),
    ],
)
def test_a_planted_upward_import_is_caught(importer: str, planted: str) -> None:
    sources = modules()
    source = sources[importer] + "\n" + planted + "\n"
    assert upward_imports(importer, source, set(sources))
