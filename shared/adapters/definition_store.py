"""Adapter for the definitions store: export and connection definitions as Table entities,
each with an ETag and every earlier version.

They live in the run table (so the app needs no other table), partition ``~export`` or
``~connection`` (export names cannot start with ``~``, so no export's runs share it). Each
holds, per name, the current entity (row key: the name) and one entity per version (row key
``<name>~<inverted version>``, newest first; names cannot hold ``~``). A change writes the
new current entity and its version entity in one transaction, conditional on the ETag the
caller read, so two writers can never both win and the history never misses a change. A
definition is stored as the JSON document of its entry in ``exports.json``; changes are
checked before they are stored (``shared.admin.definition_changes``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters import tables
from shared.adapters.runlog import RunLog, table_failure
from shared.core import definitions
from shared.core.definitions import Definitions
from shared.core.errors import PreconditionFailed, StorageError
from shared.core.runrecord import now

log = logging.getLogger(__name__)

DefinitionType = Literal["export", "connection"]  # what a definition defines
SEEDED_BY = "seed (EXPORTS_FILE)"
_PARTITIONS: dict[str, str] = {
    "export": tables.EXPORT_DEFINITIONS,
    "connection": tables.CONNECTION_DEFINITIONS,
}
_SEED_PARTITION, _SEED_ROW = tables.SEEDING, "definitions"  # the mark: the store has been seeded
_MAX_VERSION = 10**9
_CURRENT, _VERSION = "current", "version"
_NOT_IN_NAMES = set("~/\\#?") | {chr(c) for c in range(32)} | {chr(127)}  # row keys refuse them


@dataclass(frozen=True)
class Entry:
    """A definition as stored: its document, version, ETag, and who changed it last."""

    kind: str
    name: str
    document: dict[str, Any] | None  # None: this version deleted it
    version: int
    changed_by: str  # "<object id> <display name>", "seed", "cli", ...
    changed_at: str
    etag: str = ""
    action: str = ""  # for versions: created, replaced or deleted

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "changed_by": self.changed_by,
            "changed_at": self.changed_at,
            **({"action": self.action} if self.action else {}),
            "definition": self.document,
        }


class DefinitionStore(tables.TableAdapter):
    """``seed_file``: what an empty store (a new deployment) is seeded from, once, before
    its first use; recorded as changed by ``SEEDED_BY``."""

    def __init__(self, runs: RunLog, seed_file: Path | None = None) -> None:
        super().__init__(runs)
        self._seed_file = seed_file
        self._ready = False
        self._seeding = False

    def _client(self) -> TableClient:
        table = self._table()
        if not self._ready and not self._seeding:
            if self._seed_file is not None and self._seed_file.is_file() and not self._seeded():
                self._seeding = True
                try:
                    self._seed(self._seed_file)
                finally:
                    self._seeding = False
            self._ready = True  # only once seeded: a failed seeding is tried again
        return table

    def _seeded(self) -> bool:
        try:
            self._table().get_entity(_SEED_PARTITION, _SEED_ROW)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise _failure("read the seeding mark", exc) from None
        return True

    def current(self, kind: DefinitionType) -> list[Entry]:
        """Every definition of the kind as it is now, by name."""
        rows = self._query(f"PartitionKey eq '{_PARTITIONS[kind]}' and entry eq '{_CURRENT}'", {})
        return sorted((_entry(row) for row in rows), key=lambda e: e.name)

    def get(self, kind: DefinitionType, name: str) -> Entry | None:
        try:
            return _entry(self._client().get_entity(_PARTITIONS[kind], name))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _failure(f"read {kind} {name}", exc) from None

    def recreated_at(self, kind: DefinitionType, name: str) -> str | None:
        """When the definition was created again after a deletion (None if it never was):
        what happened under its name before belongs to the deleted one."""
        versions = self.history(kind, name, limit=1000)
        created = next((v for v in versions if v.action == "created"), None)
        if created is None or not any(
            v.action == "deleted" for v in versions if v.version < created.version
        ):
            return None
        return created.changed_at

    def history(self, kind: DefinitionType, name: str, limit: int = 20) -> list[Entry]:
        """The definition's versions, newest first (also after it was deleted)."""
        rows = self._query(
            "PartitionKey eq @kind and RowKey gt @low and RowKey lt @high",
            {"kind": _PARTITIONS[kind], "low": f"{name}~", "high": f"{name}~~"},
            limit,
        )
        return [_entry(row) for row in rows]

    def put(
        self,
        kind: DefinitionType,
        name: str,
        document: dict[str, Any],
        *,
        etag: str | None,
        by: str,
    ) -> Entry:
        """Create the definition (``etag`` None: it must not exist) or replace it (``etag``:
        the one the caller read; PreconditionFailed when it changed since)."""
        existing = self.get(kind, name)
        if etag is None and existing is not None:
            raise PreconditionFailed(
                f"{kind} {name!r} exists (version {existing.version}); send If-Match with its "
                "ETag to replace it"
            )
        if etag is not None and (existing is None or existing.etag != etag):
            raise PreconditionFailed(f"{kind} {name!r} changed since it was read; read it again")
        version = (_last_version(self, kind, name) or 0) + 1
        action = "created" if existing is None else "replaced"
        at = now()
        current = _row(kind, name, document, version=version, by=by, at=at, entry=_CURRENT)
        record = _row(kind, name, document, version=version, by=by, at=at, entry=_VERSION,
                      action=action)  # fmt: skip
        if existing is None:
            operations: list[Any] = [("create", current)]
        else:
            operations = [("update", current, {"mode": UpdateMode.REPLACE, "etag": etag,
                           "match_condition": MatchConditions.IfNotModified})]  # fmt: skip
        etags = self._transact([*operations, ("create", record)], kind, name)
        # The ETag of this write itself: reading the entity again could return a later one,
        # and an If-Match with it would then overwrite a change its caller never saw.
        etag = etags[0] if etags else ""
        if not etag:
            raise StorageError(f"definitions: the write of {kind} {name} returned no ETag")
        return dataclasses.replace(_entry(current), etag=etag)

    def delete(self, kind: DefinitionType, name: str, *, etag: str, by: str) -> Entry:
        """Delete the definition (its versions stay, plus one saying who deleted it)."""
        existing = self.get(kind, name)
        if existing is None:
            raise PreconditionFailed(f"{kind} {name!r} does not exist (any more)")
        if existing.etag != etag:
            raise PreconditionFailed(f"{kind} {name!r} changed since it was read; read it again")
        version = existing.version + 1
        record = _row(kind, name, None, version=version, by=by, at=now(), entry=_VERSION,
                      action="deleted")  # fmt: skip
        delete = ("delete", {"PartitionKey": _PARTITIONS[kind], "RowKey": name},
                  {"etag": etag, "match_condition": MatchConditions.IfNotModified})  # fmt: skip
        self._transact([delete, ("create", record)], kind, name)
        return _entry(record)

    def document(self) -> dict[str, Any]:
        """The definitions as stored now, as one ``exports.json`` document."""
        return {
            "connections": [e.document for e in self.current("connection") if e.document],
            "exports": [e.document for e in self.current("export") if e.document],
        }

    def definitions(self) -> Definitions:
        """The definitions as stored now, checked (broken entries set aside)."""
        return definitions.parse(self.document(), allow_empty=True)

    def _seed(self, seed_file: Path) -> None:
        """Import the seed file once: each definition that has no history yet (so that one
        deleted meanwhile, or seeded by another instance, is left as it is), then the mark
        that says it is done (a failure before it: the next use tries again).

        A definition with a problem is stored too, as it is: it is set aside whenever the
        definitions are read (listed as invalid with its problems, never run) while the
        others run, and is corrected through the API like any other. Only a file that is
        not a definitions document at all (not JSON, no connections, no list of exports)
        seeds nothing: ConfigurationError, naming its problems, on each use until it is
        corrected."""
        loaded = definitions.load(seed_file)
        if loaded.problems:
            log.error("Seeding definitions from %s; set aside until corrected: %s",
                      seed_file, "; ".join(loaded.problems))  # fmt: skip
        # Definitions some other writer stored (a store from before the mark existed): the
        # file is not what they manage by any more, so only mark the store as seeded.
        others = (
            f"(PartitionKey eq '{tables.EXPORT_DEFINITIONS}' or "
            f"PartitionKey eq '{tables.CONNECTION_DEFINITIONS}') and changed_by ne @seed"
        )
        if not self._query(others, {"seed": SEEDED_BY}, 1):
            self._seed_from(seed_file)
        mark = {"PartitionKey": _SEED_PARTITION, "RowKey": _SEED_ROW, "file": seed_file.name,
                "at": now()}  # fmt: skip
        try:
            tables.upsert(self._table(), mark)
        except AzureError as exc:
            raise _failure("write the seeding mark", exc) from None

    def _seed_from(self, seed_file: Path) -> None:
        document = json.loads(seed_file.read_text("utf-8"))
        for kind, key in (("connection", "connections"), ("export", "exports")):
            entries = document.get(key)
            for index, entry in enumerate(entries if isinstance(entries, list) else []):
                name = seed_name(entry, index)
                if self.history(kind, name, limit=1):  # type: ignore[arg-type]
                    continue  # seeded already (by an attempt that failed later), or deleted
                # PreconditionFailed: another instance, starting at the same time, did it
                with contextlib.suppress(PreconditionFailed):
                    self.put(kind, name, entry, etag=None, by=SEEDED_BY)  # type: ignore[arg-type]
        log.info("Seeded the definitions store from %s", seed_file)

    def _transact(self, operations: list[Any], kind: str, name: str) -> list[str]:
        """Run the operations as one transaction; the ETag each one left, in order. One whose
        reply was lost is known by its write ID (``shared.adapters.tables``)."""
        try:
            return tables.transact(self._client(), operations)
        except tables.Conflict:
            raise PreconditionFailed(
                f"{kind} {name!r} was changed by someone else meanwhile; read it again"
            ) from None
        except AzureError as exc:
            raise _failure(f"write {kind} {name}", exc) from None

    def _query(self, where: str, parameters: dict[str, Any], limit: int = 1000) -> list[Any]:
        try:
            rows = []
            for row in self._client().query_entities(
                where, parameters=parameters, results_per_page=min(limit, 1000)
            ):
                rows.append(row)
                if len(rows) >= limit:
                    break
            return rows
        except AzureError as exc:
            raise _failure("query definitions", exc) from None


def seed_name(entry: object, index: int) -> str:
    """The name a seed file's entry is stored under: its own, or ``entry-<index>`` when it
    has none a row key can hold (it is then set aside, and listed by its place)."""
    name = entry.get("name") if isinstance(entry, dict) else None
    if isinstance(name, str) and name and not set(name) & _NOT_IN_NAMES and len(name) <= 200:
        return name
    return f"entry-{index}"


def _last_version(store: DefinitionStore, kind: DefinitionType, name: str) -> int | None:
    newest = store.history(kind, name, limit=1)
    return newest[0].version if newest else None


def _row(
    kind: str,
    name: str,
    document: dict[str, Any] | None,
    *,
    version: int,
    by: str,
    at: str,
    entry: str,
    action: str = "",
) -> dict[str, Any]:
    row_key = name if entry == _CURRENT else f"{name}~{_MAX_VERSION - version:09d}"
    return {
        "PartitionKey": _PARTITIONS[kind],
        "RowKey": row_key,
        "name": name,
        "entry": entry,
        "document": json.dumps(document, separators=(",", ":")) if document is not None else "",
        "version": version,
        "changed_by": by,
        "changed_at": at,
        "action": action,
    }


def _entry(row: Any) -> Entry:
    text = str(row.get("document") or "")
    return Entry(
        kind=str(row["PartitionKey"]).lstrip("~"),
        name=str(row.get("name") or row["RowKey"]),
        document=json.loads(text) if text else None,
        version=int(row.get("version") or 0),
        changed_by=str(row.get("changed_by") or ""),
        changed_at=str(row.get("changed_at") or ""),
        etag=str(getattr(row, "metadata", {}).get("etag") or ""),
        action=str(row.get("action") or ""),
    )


def _failure(action: str, exc: AzureError) -> StorageError:
    return table_failure(action, exc, "definitions")
