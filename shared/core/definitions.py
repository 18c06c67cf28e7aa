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

import dataclasses
import enum
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.core.errors import ConfigurationError, InvalidExport, NotFound
from shared.core.identifiers import IdentifierType
from shared.core.safeguard import (
    DEFAULT_ALWAYS_ALLOWED_REMOVALS,
    DEFAULT_MAX_REMOVAL_PERCENT,
    Limits,
)

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_AUDIENCE_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")


def is_export_name(value: str) -> bool:
    """Whether ``value`` can be an export's name (what a URL or a blob prefix is made of)."""
    return _NAME.fullmatch(value) is not None


def is_audience_id(value: str) -> bool:
    """Whether ``value`` can be a Snapchat segment ID: what the app puts in a URL path and a
    blob name, so an ID from Snapchat's answers or from storage is checked before use."""
    return _AUDIENCE_ID.fullmatch(value) is not None


SECRET_SUFFIXES = ("client-id", "client-secret", "refresh-token")
# Fields older versions let a connection point at any secret; refused now (``_parse_connections``).
LEGACY_SECRET_FIELDS = ("client_id_secret", "client_secret_secret", "refresh_token_secret")


@dataclass(frozen=True)
class Connection:
    """A set of Snapchat credentials, stored as three secrets whose names follow from the
    connection's name alone (``snapchat-<name>-client-id``, ``-client-secret``,
    ``-refresh-token``): no definition can point the app at any other secret, such as the
    state key or another connection's. The names cannot collide between connections (the
    three suffixes end in different words) and never start like ``exporter-state-key``."""

    name: str
    display_name: str = ""  # shown to people; the name when empty
    allowed: tuple[str, ...] = ()  # Entra object IDs (users, groups) who may use it, besides admins

    @property
    def client_id_secret(self) -> str:
        return fixed_secret_names(self.name)[0]

    @property
    def client_secret_secret(self) -> str:
        return fixed_secret_names(self.name)[1]

    @property
    def refresh_token_secret(self) -> str:
        return fixed_secret_names(self.name)[2]

    @property
    def secret_names(self) -> tuple[str, str, str]:
        return fixed_secret_names(self.name)


def fixed_secret_names(connection: str) -> tuple[str, str, str]:
    """The client ID, client secret and refresh token secrets of connection ``connection``."""
    first, second, third = (f"snapchat-{connection}-{suffix}" for suffix in SECRET_SUFFIXES)
    return first, second, third


@dataclass(frozen=True)
class BrokenConnection:
    """A connection entry set aside: it is not used, and neither are the exports naming it."""

    name: str
    problems: tuple[str, ...]


LIFETIME = 9999  # Snapchat's retention_in_days for members that never expire
ADD_MODE_RETENTION_DAYS = 180  # the default for an audience an add-mode export creates


@dataclass(frozen=True)
class NewAudience:
    """A customer-list audience the app creates on the first run, when no ID is given."""

    ad_account_id: str
    name: str
    retention_in_days: int = LIFETIME
    description: str = ""


class Mode(enum.StrEnum):
    """How a run changes the audience (see docs/how-it-works.md, *Mirror sync*)."""

    ADD = "add"  # send every identifier of the snapshot; the audience only grows
    MIRROR = "mirror"  # add the new, remove those that left


MODES = tuple(Mode)


@dataclass(frozen=True)
class Source:
    """One Customer Insights segment export: a folder (or flat file prefix) in a container."""

    container: str
    path: str

    @property
    def table_name(self) -> str:
        """The Customer Insights table (segment) name: the last part of the path."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def label(self) -> str:
        return f"{self.container}/{self.path}"


MAX_SOURCES = 20


@dataclass(frozen=True)
class Export:
    name: str
    container: str  # the first segment's container and path (see ``sources``)
    path: str  # the segment's folder (or flat file prefix) inside the container
    audience_id: str  # "" when the app creates the audience (see new_audience)
    connection: str
    columns: tuple[tuple[IdentifierType, str], ...]  # kind and CSV column, in a fixed order
    enabled: bool = True
    mode: Mode = Mode.ADD
    default_country_code: str | None = None
    new_audience: NewAudience | None = None
    removal_limits: Limits = dataclasses.field(default_factory=Limits)  # mirror safeguard
    more_sources: tuple[Source, ...] = ()  # the segments after the first, if it has several

    @property
    def sources(self) -> tuple[Source, ...]:
        """Every segment the export sends to its one audience, in order."""
        return (Source(self.container, self.path), *self.more_sources)

    @property
    def email_column(self) -> str:
        return dict(self.columns).get(IdentifierType.EMAIL, "")

    @property
    def table_name(self) -> str:
        """The Customer Insights table (segment) name: the last part of the path."""
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class BrokenExport:
    """An export entry that failed validation: it never runs, its problems are reported."""

    name: str  # may be "exports[<index>]" when the entry has no usable name
    problems: tuple[str, ...]


@dataclass(frozen=True)
class Definitions:
    exports: tuple[Export, ...]
    connections: tuple[Connection, ...]
    broken: tuple[BrokenExport, ...] = ()
    other_problems: tuple[str, ...] = ()  # about connections or the document itself
    broken_connections: tuple[BrokenConnection, ...] = ()  # their problems are in other_problems

    @property
    def problems(self) -> list[str]:
        return [*self.other_problems, *(p for b in self.broken for p in b.problems)]

    def export(self, name: str) -> Export | None:
        return next((e for e in self.exports if e.name == name), None)

    def broken_export(self, name: str) -> BrokenExport | None:
        return next((b for b in self.broken if b.name == name), None)

    def require(self, name: str) -> Export:
        """The export called ``name``; InvalidExport (with its problems) for one that was set
        aside, NotFound for none."""
        export = self.export(name)
        if export is None:
            broken = self.broken_export(name)
            if broken is not None:
                raise InvalidExport(list(broken.problems))
            raise NotFound(f"no export named {name!r}")
        return export

    def connection(self, name: str) -> Connection:
        found = next((c for c in self.connections if c.name == name), None)
        if found is None:  # load() guarantees every export names a declared connection
            raise ConfigurationError(f"connection {name!r}: not declared")
        return found

    def require_connection(self, name: str) -> Connection:
        """The connection called ``name`` (for a request that names it); InvalidExport (with
        its problems) for one that was set aside, NotFound for none."""
        found = next((c for c in self.connections if c.name == name), None)
        if found is not None:
            return found
        if any(b.name == name for b in self.broken_connections):
            raise InvalidExport(self.connection_problems(name))
        raise NotFound(f"no connection named {name!r}")

    def connection_problems(self, name: str) -> list[str]:
        """The problems of connection ``name``'s entry (also of one that was set aside)."""
        return [p for p in self.other_problems if p.startswith(f"connection {name!r}: ")]


def default_connection(name: str) -> Connection:
    """A connection known by its name alone (its secrets' names follow from it)."""
    return Connection(name=name)


def is_connection_name(value: str) -> bool:
    """Whether ``value`` can be a connection's name (it makes its secrets' names)."""
    return _NAME.fullmatch(value) is not None


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
    _unknown_keys(document, {"connections", "exports", "$schema"}, "export definitions", problems)
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
        name = _name(item, where, problems)
        where = f"connection {name!r}" if name else where
        fields = {k: v for k, v in item.items() if k not in LEGACY_SECRET_FIELDS}
        _unknown_keys(fields, _CONNECTION_FIELDS, where, problems)
        if name and name in {c.name for c in connections} | {b.name for b in set_aside}:
            problems.append(f"{where}: name: declared twice")
            continue
        refused = _secret_fields(item, name, where)
        problems.extend(refused)
        display_name = item.get("display_name", "")
        if not isinstance(display_name, str) or len(display_name) > 256:
            problems.append(f"{where}: display_name: expected a string of at most 256 characters")
            display_name = ""
        allowed = _parse_allowed(item.get("allowed", []), where, problems)
        if name and refused:
            set_aside.append(BrokenConnection(name, tuple(refused)))
        elif name:
            connections.append(Connection(name, display_name=display_name, allowed=allowed))
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


def _parse_allowed(raw: object, where: str, problems: list[str]) -> tuple[str, ...]:
    """Who may use a connection: Entra object IDs of users and groups."""
    if not isinstance(raw, list):
        problems.append(f"{where}: allowed: expected a list of Entra object IDs")
        return ()
    allowed = []
    for index, value in enumerate(raw):
        if isinstance(value, str) and _OBJECT_ID.fullmatch(value.lower()):
            allowed.append(value.lower())
        else:
            problems.append(
                f"{where}: allowed[{index}]: expected an Entra object ID "
                "(e.g. 6f1c2b3a-4d5e-6f70-8192-a3b4c5d6e7f8)"
            )
    return tuple(dict.fromkeys(allowed))


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
        export = _parse_export(item, f"exports[{index}]", connections, problems, where)
        if len(shared_by) > 1:
            places = ", ".join(f"exports[{i}]" for i in shared_by)
            problems.append(
                f"export {name!r} ({where}): name: used by {places}; names must be unique"
            )
        if export is not None and not problems:
            exports.append(export)
        else:
            name = item.get("name") if isinstance(item, dict) else None
            label = name if isinstance(name, str) and _NAME.fullmatch(name) else f"exports[{index}]"
            broken.append(BrokenExport(name=label, problems=tuple(problems)))
    return exports, broken


def _parse_export(
    item: object, where: str, connections: set[str], problems: list[str], place: str = ""
) -> Export | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected an object")
        return None
    name = _name(item, where, problems)
    if name:
        where = f"export {name!r} ({place})" if place else f"export {name!r}"
    _unknown_keys(item, _EXPORT_FIELDS, where, problems)
    sources = _parse_sources(item, where, problems)
    container, path = (sources[0].container, sources[0].path) if sources else ("", "")
    audience_id, new_audience = _parse_audience(item, where, problems,
                                                mirror=item.get("mode") == "mirror")  # fmt: skip
    connection = _text(item, "connection", where, problems)
    if connection and connection not in connections:
        problems.append(f"{where}: connection: {connection!r} is not a declared, valid connection")
    columns = _parse_columns(item.get("columns"), where, problems)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{where}: enabled: expected true or false")
    mode = item.get("mode", Mode.ADD)
    if mode not in MODES:
        problems.append(f"{where}: mode: expected one of {', '.join(MODES)}")
    country = item.get("default_country_code")
    if country is not None and not (
        isinstance(country, str) and country.isdigit() and 1 <= len(country) <= 3
    ):
        problems.append(f'{where}: default_country_code: expected 1 to 3 digits, e.g. "44"')
    limits = _parse_limits(item, where, problems)
    if enabled is not False and item.get("data_transfer_acknowledged") is not True:
        problems.append(
            f"{where}: data_transfer_acknowledged: must be true. Exporting sends hashed "
            "personal data out of your compliance boundary to Snapchat; set it once your "
            "organisation has approved that transfer for this segment"
        )
    if problems:
        return None
    return Export(
        name=name,
        container=container,
        path=path,
        audience_id=audience_id,
        connection=connection,
        columns=columns,
        enabled=bool(enabled),
        mode=Mode(mode),
        default_country_code=country,
        new_audience=new_audience,
        removal_limits=limits,
        more_sources=tuple(sources[1:]),
    )


def _parse_limits(item: dict[str, Any], where: str, problems: list[str]) -> Limits:
    percent = item.get("max_removal_percent", DEFAULT_MAX_REMOVAL_PERCENT)
    if not _is_number(percent) or not 0 <= percent <= 100:
        problems.append(f"{where}: max_removal_percent: expected a number from 0 to 100")
        percent = DEFAULT_MAX_REMOVAL_PERCENT
    floor = item.get("always_allowed_removals", DEFAULT_ALWAYS_ALLOWED_REMOVALS)
    if not _is_number(floor) or isinstance(floor, float) or floor < 0:
        problems.append(f"{where}: always_allowed_removals: expected a whole number, 0 or more")
        floor = DEFAULT_ALWAYS_ALLOWED_REMOVALS
    return Limits(max_removal_percent=float(percent), always_allowed_removals=int(floor))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_EXPORT_FIELDS = {
    "name", "description", "source", "sources", "audience_id", "audience", "connection", "columns",
    "enabled", "mode", "default_country_code", "data_transfer_acknowledged",
    "max_removal_percent", "always_allowed_removals",
}  # fmt: skip


def _parse_audience(
    item: dict[str, Any], where: str, problems: list[str], *, mirror: bool
) -> tuple[str, NewAudience | None]:
    """Either ``audience_id`` (an existing audience) or ``audience`` (one to create)."""
    if ("audience_id" in item) == ("audience" in item):
        problems.append(
            f"{where}: audience_id: give either audience_id (an existing audience) or "
            "audience (ad_account_id and name of one the app creates)"
        )
        return "", None
    if "audience_id" in item:
        return _text(item, "audience_id", where, problems, _AUDIENCE_ID), None
    raw = item["audience"]
    where = f"{where}: audience"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object with ad_account_id and name")
        return "", None
    _unknown_keys(
        raw, {"ad_account_id", "name", "retention_in_days", "description"}, where, problems
    )
    account = _text(raw, "ad_account_id", where, problems, _AUDIENCE_ID)
    name = _text(raw, "name", where, problems)
    if len(name) > 375:
        problems.append(f"{where}: name: at most 375 characters")
    # Add mode never removes anyone: a finite retention is what lets the people who left the
    # segment age out of the audience (each run adds everyone still in it again). Mirror
    # mode removes them itself and sends only changes, so its audiences keep members.
    retention = raw.get("retention_in_days", LIFETIME if mirror else ADD_MODE_RETENTION_DAYS)
    if not isinstance(retention, int) or isinstance(retention, bool) or not 1 <= retention <= 9999:
        problems.append(f"{where}: retention_in_days: expected 1 to 9999 (9999: lifetime)")
        retention = 9999
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(f"{where}: description: expected a string")
        description = ""
    return "", NewAudience(account, name, retention, description)


def _parse_sources(item: dict[str, Any], where: str, problems: list[str]) -> list[Source]:
    """``sources`` (one or more segments) or ``source`` (the shorthand for one)."""
    if ("source" in item) == ("sources" in item):
        problems.append(
            f"{where}: source: give either source (one segment: container and path) or "
            "sources (a list of them)"
        )
        return []
    if "source" in item:
        container, path = _parse_source(item["source"], f"{where}: source", problems)
        return [Source(container, path)]
    raw = item["sources"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SOURCES:
        problems.append(f"{where}: sources: expected a list of 1 to {MAX_SOURCES} segments")
        return []
    found = [
        Source(*_parse_source(entry, f"{where}: sources[{index}]", problems))
        for index, entry in enumerate(raw)
    ]
    for index, source in enumerate(found):
        if source.path and source in found[:index]:
            problems.append(f"{where}: sources[{index}]: {source.label} is listed twice")
    return found


def _parse_source(raw: object, where: str, problems: list[str]) -> tuple[str, str]:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object with container and path")
        return "", ""
    _unknown_keys(raw, {"container", "path"}, where, problems)
    container = _text(raw, "container", where, problems, _CONTAINER)
    path = _text(raw, "path", where, problems).strip("/")
    parts = path.split("/")
    if path and any(part in ("", ".", "..") for part in parts):
        problems.append(f"{where}: path: empty, '.' and '..' segments are not allowed")
    return container, path


def _parse_columns(
    raw: object, where: str, problems: list[str]
) -> tuple[tuple[IdentifierType, str], ...]:
    where = f"{where}: columns"
    keys = [kind.column_key for kind in IdentifierType]
    if isinstance(raw, dict):
        _unknown_keys(raw, set(keys), where, problems)
    if not isinstance(raw, dict) or not any(key in raw for key in keys):
        problems.append(f"{where}: expected an object naming at least one of {', '.join(keys)}")
        return ()
    return tuple(
        (kind, _text(raw, kind.column_key, where, problems))
        for kind in IdentifierType
        if kind.column_key in raw
    )


def _name(item: dict[str, Any], where: str, problems: list[str]) -> str:
    name = _text(item, "name", where, problems)
    if name and not _NAME.fullmatch(name):
        problems.append(
            f"{where}: name: {name!r} must be 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit (it is used in URLs)"
        )
        return ""
    return name


def _text(
    item: dict[str, Any],
    key: str,
    where: str,
    problems: list[str],
    pattern: re.Pattern[str] | None = None,
) -> str:
    value = item.get(key)
    if value is None:
        problems.append(f"{where}: {key}: required")
        return ""
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: {key}: expected a non-empty string")
        return ""
    if pattern is not None and not pattern.fullmatch(value):
        problems.append(f"{where}: {key}: {value!r} is not a valid value")
        return ""
    return value


def _unknown_keys(item: dict[str, Any], known: set[str], where: str, problems: list[str]) -> None:
    for key in sorted(set(item) - known):
        problems.append(
            f"{where}: {key}: unknown field (expected one of {', '.join(sorted(known))})"
        )
