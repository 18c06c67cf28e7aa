"""Export and connection definitions as data: the types a validated document is made of,
and the names and IDs a definition may hold. ``shared.core.definitions`` reads a document
into them.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass

from shared.core.errors import ConfigurationError, InvalidExport, NotFound
from shared.core.identifiers import IdentifierType
from shared.core.safeguard import Limits

NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
AUDIENCE_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")


def is_export_name(value: str) -> bool:
    """Whether ``value`` can be an export's name (what a URL or a blob prefix is made of)."""
    return NAME.fullmatch(value) is not None


def is_audience_id(value: str) -> bool:
    """Whether ``value`` can be a Snapchat segment ID: what the app puts in a URL path and a
    blob name, so an ID from Snapchat's answers or from storage is checked before use."""
    return AUDIENCE_ID.fullmatch(value) is not None


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
    # The names the admin gave those IDs (people and groups), as (object ID, name): shown,
    # never used to decide anything. The app does not ask Microsoft Graph (docs/sign-in.md).
    allowed_names: tuple[tuple[str, str], ...] = ()

    def allowed_as_named(self) -> list[dict[str, str]]:
        """``allowed`` as the API answers it: each ID with its name ("" when none was given)."""
        names = dict(self.allowed_names)
        return [{"id": object_id, "name": names.get(object_id, "")} for object_id in self.allowed]

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


LOOKALIKE_TYPES = ("BALANCE", "SIMILARITY", "REACH")  # Snapchat's; BALANCE is its default
COUNTRY = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2, as Snapchat takes countries


@dataclass(frozen=True)
class Lookalike:
    """A lookalike audience of the export's audience, created once that one is targetable."""

    type: str
    countries: tuple[str, ...]
    name: str


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
    lookalike: Lookalike | None = None  # a lookalike of the audience to create, if asked

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
    return NAME.fullmatch(value) is not None
