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


METHOD = r"GET|POST|PUT|DELETE|PATCH"


def documented_routes(page: str) -> set[tuple[str, str]]:
    """The (method, route) pairs the first column of the route table names: `GET /api/x`,
    or several methods for one path (`GET`/`PUT`/`DELETE /api/x`); a query is dropped and the
    console's `…` is the Functions route's `{*path}`."""
    table = page.split("| call | answer |", 1)[1].split("\n\n", 1)[0]
    found: set[tuple[str, str]] = set()
    for row in table.splitlines()[2:]:
        pending: list[str] = []
        for span in re.findall(r"`([^`]+)`", row.split("|")[1]):
            matched = re.fullmatch(rf"({METHOD})(?: /api/([^?\s]+)(?:\?\S*)?)?", span)
            assert matched, f"docs/http-api.md: {span!r} is not `METHOD /api/route`"
            pending.append(matched[1])
            if matched[2]:
                route = matched[2].replace("…", "{*path}")
                found |= {(method, route) for method in pending}
                pending = []
        assert not pending, f"docs/http-api.md: {row[:60]!r} names a method without a route"
    return found


def app_routes() -> set[tuple[str, str]]:
    from devtools.localhost import app_functions  # noqa: PLC0415 - built once per process

    found: set[tuple[str, str]] = set()
    for function in app_functions():
        trigger = function.get_trigger()
        if trigger.type == "httpTrigger":
            found |= {(str(m.value), trigger.route) for m in trigger.methods}
    return found


def test_the_route_table_lists_exactly_the_apps_routes() -> None:
    page = (ROOT / "docs" / "http-api.md").read_text("utf-8")
    documented, served = documented_routes(page), app_routes()
    assert served - documented == set(), "routes the app serves that docs/http-api.md lacks"
    assert documented - served == set(), "routes docs/http-api.md lists that the app lacks"


def test_the_principal_header_example_is_one_the_app_reads() -> None:
    import base64  # noqa: PLC0415
    import json  # noqa: PLC0415

    from shared.core.access import Role, from_client_principal  # noqa: PLC0415

    page = (ROOT / "docs" / "sign-in.md").read_text("utf-8")
    section = page.split("## The principal header", 1)[1]
    example = re.search(r"```json\n(.*?)```", section, flags=re.DOTALL)
    assert example, "sign-in.md shows no principal header"
    header = base64.b64encode(json.dumps(json.loads(example[1])).encode()).decode()
    who = from_client_principal(header)
    assert who.object_id == "00000000-0000-4000-8000-00000000000b"
    assert who.name == "Olivia Operator"
    assert who.roles == {Role.OPERATOR}
    assert who.groups == {"00000000-0000-4000-8000-0000000000f1"}
