"""The app's package stays readable: no module over 500 lines, no function over 60.

A long module is a heap of things a newcomer cannot find by name; a long function is several
steps that deserve names. The limits are the ones the team agreed on for ``shared/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted((ROOT / "shared").rglob("*.py"))


def too_long(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text("utf-8")
    where = path.relative_to(root).as_posix()
    found = []
    if len(text.splitlines()) > MAX_MODULE_LINES:
        found.append(f"{where}: {len(text.splitlines())} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_module_or_function_in_shared_is_too_long() -> None:
    assert [problem for path in modules() for problem in too_long(path)] == []


def test_a_long_function_is_caught(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    planted = tmp_path / "shared" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(f"def long():\n{body}\n")
    expected = f"shared/planted.py:1 long: {MAX_FUNCTION_LINES + 1} lines"
    assert too_long(planted, tmp_path) == [expected]
