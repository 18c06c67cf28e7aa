"""The README stays short and points into docs/; every link in the manual resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)")


def anchors(text: str) -> set[str]:
    """GitHub's anchors for a document's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_the_readme_is_short_and_links_every_document() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert len(readme.splitlines()) < 200
    linked = {target for target, _ in LINK.findall(readme)}
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= linked


def test_every_relative_link_in_the_manual_resolves() -> None:
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in LINK.findall(document.read_text("utf-8")):
            if "://" in target:
                continue
            path = (document.parent / target).resolve()
            assert path.exists(), f"{document.name}: {target} does not exist"
            if anchor:
                assert anchor in anchors(path.read_text("utf-8")), f"{document.name}: #{anchor}"


def test_the_command_line_page_shows_every_command() -> None:
    import argparse  # noqa: PLC0415

    from shared.entry import cli  # noqa: PLC0415

    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    page = (ROOT / "docs" / "command-line.md").read_text("utf-8")
    shown = set(re.findall(r"python -m shared (?:--settings \S+ )?([a-z-]+)", page))
    assert set(commands.choices) - shown == set()


def test_the_code_map_lists_every_module_of_the_package() -> None:
    page = (ROOT / "docs" / "code-map.md").read_text("utf-8")
    listed = set(re.findall(r"^\s+([a-z_]+\.py)\s", page, flags=re.MULTILINE))
    modules = {p.name for p in (ROOT / "shared").rglob("*.py") if p.name != "__init__.py"}
    assert modules - listed == set()
