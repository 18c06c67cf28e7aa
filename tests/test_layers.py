"""The package's layers, checked: imports only point down.

    function_app, shared.__main__, shared.entry.*     entry points: triggers, HTTP API, pages,
                                                      sign-in, command line, local worker
    shared.admin.*, shared.connections.*              definitions and purge; Connect Snapchat
    shared.runs.*                                     runs: start, attempts, locks, records, split
    shared.export.*                                   the pipeline's stages
    shared.runtime, shared.allocator                  the composition root
    shared.adapters.*                                 one adapter per external system
    shared.core.*                                     pure rules and formats

A module may import from its own layer and the ones below it, never from one above: so the
pipeline's stages never know about runs, and runs never about who changes definitions.
Entry points may import each other (the CLI's ``work`` hands jobs to the real queue handlers).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = {"function_app", "shared.__main__"}


FLOORS = (  # (prefix, floor), the first that matches wins
    ("shared.core", 0),
    ("shared.adapters", 1),
    ("shared.runtime", 2),
    ("shared.allocator", 2),
    ("shared.export", 3),
    ("shared.runs", 4),
    ("shared.admin", 5),
    ("shared.connections", 5),
    ("shared.entry", 6),
)


def layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return 6
    for prefix, floor in FLOORS:
        if module == prefix or module.startswith(prefix + "."):
            return floor
    return 2  # the package itself


def imported(source: str, importer: str, *, package: bool = False) -> set[str]:
    """Every module a module's source imports, anywhere in it (also inside functions, with a
    relative import, or through importlib.import_module / __import__ with a literal name)."""
    found: set[str] = set()
    here = importer if package else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.add(base)
            # "from shared import pipeline" imports the module shared.export.pipeline
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _names_a_module(node) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    return found - {importer}


def _names_a_module(call: ast.Call) -> bool:
    function = call.func
    if isinstance(function, ast.Name):
        return function.id in ("__import__", "import_module")
    return isinstance(function, ast.Attribute) and function.attr == "import_module"


def app_modules(found: set[str]) -> set[str]:
    return {m for m in found if m == "function_app" or m.startswith("shared.")}


PACKAGES: set[str] = set()


def modules() -> dict[str, str]:
    sources = {"function_app": (ROOT / "function_app.py").read_text("utf-8")}
    for path in sorted((ROOT / "shared").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if parts[-1] == "__init__":
            PACKAGES.add(name)
        sources[name] = path.read_text("utf-8")
    return sources


# What the pure core may not use: clients of the network and of Azure.
IO_LIBRARIES = ("azure", "requests", "urllib3", "http.client", "socket", "cryptography")


def upward_imports(importer: str, source: str, known: set[str]) -> list[str]:
    found = imported(source, importer, package=importer in PACKAGES)
    problems = [
        f"{importer} (layer {layer(importer)}) imports {target} (layer {layer(target)})"
        for target in app_modules(found)
        if target in known and layer(target) > layer(importer)
    ]
    if layer(importer) == 0:
        problems += [
            f"{importer} (the pure core) imports {target}"
            for target in found
            if target.split(".")[0] in {lib.split(".")[0] for lib in IO_LIBRARIES}
            and any(target == lib or target.startswith(lib + ".") for lib in IO_LIBRARIES)
        ]
    return sorted(problems)


def test_imports_only_point_down_the_layers() -> None:
    sources = modules()
    problems = [
        p for name, text in sources.items() for p in upward_imports(name, text, set(sources))
    ]
    assert problems == []


def test_every_layer_is_on_disk() -> None:
    layers = {layer(name) for name in modules()}
    assert layers == {0, 1, 2, 3, 4, 5, 6}


def test_only_a_handful_of_modules_lie_directly_under_shared() -> None:
    top = sorted(p.name for p in (ROOT / "shared").glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "allocator.py", "runtime.py"]


@pytest.mark.parametrize(
    ("importer", "planted"),
    [
        ("shared.core.identifiers", "from shared.adapters import snapchat"),
        ("shared.core.layout", "from shared.runs.service import schedule"),
        ("shared.adapters.runlog", "import shared.export.pipeline"),
        ("shared.export.pipeline", "def late():\n    import function_app\n"),
        ("shared.core.identifiers", "from ..adapters import snapchat"),
        ("shared.core.layout", "from ..runs import service"),
        ("shared.adapters.runlog", "from ..runs.attempts import perform"),
        ("shared.core.layout", "import importlib\nimportlib.import_module('shared.runs.service')"),
        ("shared.core.layout", "__import__('shared.adapters.snapchat')"),
        ("shared.core.identifiers", "import requests"),
        ("shared.export.pipeline", "from shared.runs import split"),
        ("shared.export.pipeline", "from shared.runs.locking import Heartbeat"),
        ("shared.runs.service", "from shared.admin import purge"),
        ("shared.runs.attempts", "from shared.entry import api"),
        ("shared.core.layout", "from azure.storage.blob import BlobServiceClient"),
    ],
)
def test_a_planted_upward_import_is_caught(importer: str, planted: str) -> None:
    sources = modules()
    source = sources[importer] + "\n" + planted + "\n"
    assert upward_imports(importer, source, set(sources))
