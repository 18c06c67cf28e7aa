"""Export definitions: which segment goes to which Snapchat audience, with which credentials.

Operators write them as one JSON document (``exports.json`` beside the app by default)::

    {
      "connections": [{"name": "main"}],
      "exports": [{
        "name": "high-value",
        "source": {"container": "customer-insights",
                   "path": "CustomerInsights_<id>/BlobExport/HighValueSegment"},
        "audience_id": "<Snapchat segment id>",
        "connection": "main",
        "columns": {"email": "EMail"},
        "enabled": true
      }]
    }

``load`` validates the whole document and raises one ConfigurationError listing every
problem, each prefixed with the export (or connection) and the field it concerns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from shared.core.definition_types import (
    ADD_MODE_RETENTION_DAYS,
    LEGACY_SECRET_FIELDS,
    LIFETIME,
    MAX_SOURCES,
    MODES,
    NAME,
    SECRET_SUFFIXES,
    BrokenConnection,
    BrokenExport,
    Connection,
    Definitions,
    Export,
    Mode,
    NewAudience,
    Source,
    default_connection,
    fixed_secret_names,
    is_audience_id,
    is_connection_name,
    is_export_name,
)
from shared.core.errors import ConfigurationError
from shared.core.export_fields import name_field, parse_export, unknown_fields

__all__ = [  # the types are defined in shared.core.definition_types, and read here
    "ADD_MODE_RETENTION_DAYS", "LEGACY_SECRET_FIELDS", "LIFETIME", "MAX_SOURCES", "MODES",
    "SECRET_SUFFIXES", "BrokenConnection", "BrokenExport", "Connection", "Definitions",
    "Export", "Mode", "NewAudience", "Source", "default_connection", "fixed_secret_names",
    "is_audience_id", "is_connection_name", "is_export_name", "load", "parse",
]  # fmt: skip


def load(path: Path) -> Definitions:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"export definitions: no file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"export definitions: cannot read {path} ({type(exc).__name__})"
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"export definitions: {path.name} is not valid JSON (line {exc.lineno}, "
            f"column {exc.colno}: {exc.msg})"
        ) from None
    return parse(document)


def parse(document: object, *, allow_empty: bool = False) -> Definitions:
    """Validate a definitions document.

    A broken export entry is set aside with its problems, so that the others keep running;
    only a document whose structure is unusable raises ConfigurationError. ``allow_empty``
    accepts a document without connections (a new deployment's empty store).
    """
    if not isinstance(document, dict):
        raise ConfigurationError("export definitions: the document must be a JSON object")
    if not isinstance(document.get("exports"), list):
        raise ConfigurationError("exports: expected a list")
    problems: list[str] = []
    unknown_fields(document, {"connections", "exports", "$schema"}, "export definitions", problems)
    raw_connections = document.get("connections")
    if allow_empty and raw_connections == [] and not document["exports"]:
        return Definitions(exports=(), connections=())
    connections, set_aside = _parse_connections(raw_connections, problems)
    if not connections and not set_aside and problems:
        raise ConfigurationError(problems)
    exports, broken = _parse_exports(document["exports"], {c.name for c in connections})
    return Definitions(
        exports=tuple(exports),
        connections=tuple(connections),
        broken=tuple(broken),
        other_problems=tuple(problems),
        broken_connections=tuple(set_aside),
    )


def _parse_connections(
    raw: object, problems: list[str]
) -> tuple[list[Connection], list[BrokenConnection]]:
    """The usable connections, and those set aside because they name secrets of their own
    choosing (which would let a definition make the app read any secret it can read)."""
    if not isinstance(raw, list) or not raw:
        problems.append("connections: expected a non-empty list")
        return [], []
    connections: list[Connection] = []
    set_aside: list[BrokenConnection] = []
    for index, item in enumerate(raw):
        where = f"connections[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object")
            continue
        name = name_field(item, where, problems)
        where = f"connection {name!r}" if name else where
        fields = {k: v for k, v in item.items() if k not in LEGACY_SECRET_FIELDS}
        unknown_fields(fields, _CONNECTION_FIELDS, where, problems)
        if name and name in {c.name for c in connections} | {b.name for b in set_aside}:
            problems.append(f"{where}: name: declared twice")
            continue
        refused = _secret_fields(item, name, where)
        problems.extend(refused)
        display_name = item.get("display_name", "")
        if not isinstance(display_name, str) or len(display_name) > 256:
            problems.append(f"{where}: display_name: expected a string of at most 256 characters")
            display_name = ""
        allowed, names = parse_allowed(item.get("allowed", []), where, problems)
        if name and refused:
            set_aside.append(BrokenConnection(name, tuple(refused)))
        elif name:
            connections.append(Connection(name, display_name, allowed, allowed_names=names))
    return connections, set_aside


def _secret_fields(item: dict[str, Any], name: str, where: str) -> list[str]:
    """A problem for each secret-name field of an older version's document, unless it names
    the connection's own fixed secret (an exported document from then still imports)."""
    fixed = dict(zip(LEGACY_SECRET_FIELDS, fixed_secret_names(name or "<name>"), strict=True))
    return [
        f"{where}: {key}: secret names are fixed: {', '.join(fixed.values())}; remove this field"
        for key in LEGACY_SECRET_FIELDS
        if key in item and (not name or item[key] != fixed[key])
    ]


_OBJECT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


_CONNECTION_FIELDS = {"name", "display_name", "allowed"}


MAX_PERSON_NAME = 256


def parse_allowed(
    raw: object, where: str, problems: list[str]
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Who may use a connection: Entra object IDs of users and groups, each given as the ID
    or as ``{"id": <object ID>, "name": <the name the admin chose>}``; the IDs, and the
    names given."""
    if not isinstance(raw, list):
        problems.append(f"{where}: allowed: expected a list of Entra object IDs")
        return (), ()
    allowed: list[str] = []
    names: dict[str, str] = {}
    for index, value in enumerate(raw):
        at = f"{where}: allowed[{index}]"
        named = value if isinstance(value, dict) else {"id": value}
        object_id, name = named.get("id"), named.get("name", "")
        if set(named) - {"id", "name"}:
            problems.append(f"{at}: expected only id and name")
        elif not isinstance(object_id, str) or not _OBJECT_ID.fullmatch(object_id.lower()):
            problems.append(
                f"{at}: expected an Entra object ID "
                '(e.g. 6f1c2b3a-4d5e-6f70-8192-a3b4c5d6e7f8), or {"id": …, "name": …}'
            )
        elif not isinstance(name, str) or len(name) > MAX_PERSON_NAME or "@" in name:
            problems.append(
                f"{at}: name: a display name of at most {MAX_PERSON_NAME} characters, "
                "not an email address"
            )
        else:
            allowed.append(object_id.lower())
            if name.strip():
                names.setdefault(object_id.lower(), name.strip())
    return tuple(dict.fromkeys(allowed)), tuple(names.items())


def _parse_exports(
    raw: list[Any], connections: set[str]
) -> tuple[list[Export], list[BrokenExport]]:
    names = [item.get("name") if isinstance(item, dict) else None for item in raw]
    exports: list[Export] = []
    broken: list[BrokenExport] = []
    for index, item in enumerate(raw):
        problems: list[str] = []
        name = names[index]
        shared_by = [i for i, other in enumerate(names) if isinstance(name, str) and other == name]
        # Entries that share a name are told apart by their place in the list, in every line.
        where = f"exports[{index}]" if len(shared_by) > 1 else ""
        export = parse_export(item, f"exports[{index}]", connections, problems, where)
        if len(shared_by) > 1:
            places = ", ".join(f"exports[{i}]" for i in shared_by)
            problems.append(
                f"export {name!r} ({where}): name: used by {places}; names must be unique"
            )
        if export is not None and not problems:
            exports.append(export)
        else:
            name = item.get("name") if isinstance(item, dict) else None
            label = name if isinstance(name, str) and NAME.fullmatch(name) else f"exports[{index}]"
            broken.append(BrokenExport(name=label, problems=tuple(problems)))
    return exports, broken
