"""Adapter for the run log: one Table Storage entity per export run.

Entities are partitioned by export name; the row key is derived from the run id so that a
plain query returns an export's runs newest first. Only counts, names and operator-readable
error texts are stored, never identifier values.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.errors import RecordChanged, StorageError

log = logging.getLogger(__name__)

_TIMESTAMP = "%Y%m%dT%H%M%S%f"


@dataclass
class RunRecord:
    run_id: str
    export: str
    trigger: str
    snapshot: str
    status: str = "queued"
    queued_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    rows_read: int = 0
    empty: int = 0
    invalid: int = 0
    prehashed: int = 0
    duplicates: int = 0
    uploaded: int = 0
    batches: int = 0
    resumed: int = 0
    checkpoint: str = ""  # fingerprint of the accepted requests' content (see pipeline)
    batch_size: int = 0
    source_version: str = ""
    attempts: int = 0
    requests: int = 0
    retries: int = 0
    mode: str = "add"
    dry_run: bool = False
    added: int = 0  # identifiers sent to be added (mirror: only the new ones)
    removed: int = 0  # identifiers sent to be removed (mirror mode)
    unchanged: int = 0  # identifiers already in the audience, not sent (mirror mode)
    by_type: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    audience_id: str = ""
    approximate_number_users: int | None = None  # None: not read (or Snapchat did not say)
    upload_status: str = ""
    targetable_status: str = ""
    allow_large_removal: bool = False  # the operator let this run past the removal safeguard
    allowed_by: str = ""  # who did: the trigger that asked for the run (http, cli)
    safeguard: dict[str, Any] = dataclasses.field(default_factory=dict)  # see shared.safeguard
    error: str = ""
    # The stored entity's ETag when this copy was read or last saved ("" for a new record):
    # every save is conditional on it. Not part of the record itself.
    etag: str = dataclasses.field(default="", repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        del values["etag"]
        return values

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


ACTIVE = ("queued", "running")
_JSON_FIELDS = ("by_type", "safeguard")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(at: datetime | None = None) -> str:
    """A run id that sorts by creation time: ``20261130T031500123Z-1a2b3c``."""
    stamp = (at or datetime.now(UTC)).strftime(_TIMESTAMP)[:-3]
    return f"{stamp}Z-{secrets.token_hex(3)}"


def row_key(run_id: str) -> str:
    """Row key of a run: the time digits inverted (9 - d), so newer runs sort first."""
    stamp, _, suffix = run_id.partition("Z-")
    digits = stamp.replace("T", "")
    if not (digits.isdigit() and len(digits) == 17 and suffix.isalnum()):
        raise ValueError("not a run id")
    inverted = "".join(str(9 - int(d)) for d in digits)
    return f"{inverted}-{suffix}"


def is_run_id(value: str) -> bool:
    try:
        row_key(value)
    except ValueError:
        return False
    return True


_FIELDS = {f.name: f.type for f in dataclasses.fields(RunRecord) if f.name != "etag"}


def _to_entity(record: RunRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": record.export, "RowKey": row_key(record.run_id)}
    entity.update(record.as_dict())
    for name in _JSON_FIELDS:
        entity[name] = json.dumps(entity[name], separators=(",", ":"))
    return entity


def _from_entity(entity: Any) -> RunRecord:
    values = {name: entity[name] for name in _FIELDS if name in entity}
    for name in _JSON_FIELDS:
        if isinstance(values.get(name), str):
            values[name] = json.loads(values[name])
    if values.get("approximate_number_users") == -1:  # written by earlier versions
        values["approximate_number_users"] = None
    record = RunRecord(**values)
    record.etag = str(getattr(entity, "metadata", {}).get("etag") or "")
    return record


class RunLog:
    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ready = False

    def table(self) -> TableClient:
        """The table client, creating the table on first use."""
        if not self._ready:
            try:
                self._table.create_table()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise _failure("create the run table", exc) from None
            self._ready = True
        return self._table

    def save(self, record: RunRecord) -> None:
        """Write the whole record, on one condition: nobody else wrote it since this copy was
        read or last saved (its ETag). A new record (no ETag) must not exist yet.

        Raises RecordChanged when the condition fails: the stored record is left as the
        other writer left it, and the caller decides again from a fresh read (see
        ``shared.service``: the first writer wins, and an ended record never changes).
        """
        entity = _to_entity(record)
        try:
            if record.etag:
                written = self.table().update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=record.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            else:
                written = self.table().create_entity(entity)
        except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError):
            raise RecordChanged(
                f"run {record.run_id}: its record was changed by another writer meanwhile"
            ) from None
        except AzureError as exc:
            raise _failure(f"save run {record.run_id}", exc) from None
        record.etag = str(written.get("etag") or "")

    def get(self, export: str, run_id: str) -> RunRecord | None:
        if not is_run_id(run_id):
            return None
        try:
            return _from_entity(self.table().get_entity(export, row_key(run_id)))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _failure(f"read run {run_id}", exc) from None

    def recent(self, export: str, limit: int = 20) -> list[RunRecord]:
        """The export's runs, newest first."""
        return self._query("PartitionKey eq @export", {"export": export}, limit)

    def for_snapshot(self, export: str, snapshot: str) -> list[RunRecord]:
        return self._query(
            "PartitionKey eq @export and snapshot eq @snapshot",
            {"export": export, "snapshot": snapshot},
            1000,
        )

    def _query(self, where: str, parameters: dict[str, Any], limit: int) -> list[RunRecord]:
        try:
            pages = self.table().query_entities(
                where, parameters=parameters, results_per_page=min(limit, 1000)
            )
            records: list[RunRecord] = []
            for entity in pages:
                records.append(_from_entity(entity))
                if len(records) >= limit:
                    break
            return records
        except AzureError as exc:
            raise _failure("query runs", exc) from None


LOCK_PARTITION = "~locks"  # export names cannot start with "~", so no run shares it
QUEUED = "queued"  # lock owner while a run waits in the queue: any worker may take it over


@dataclass(frozen=True)
class Holder:
    run_id: str
    owner: str
    expires_at: float


@dataclass(frozen=True)
class Claim:
    acquired: bool
    holder: Holder | None = None  # who holds the lock, when not acquired
    displaced: Holder | None = None  # another run whose expired lock was taken over


class ExportLocks:
    """At most one active run per export: a lock entity per export, taken and renewed with
    conditional writes (ETags), that expires if its holder stops renewing it (a crash).

    The owner is ``QUEUED`` from the moment a run is queued until a worker takes it, then a
    token unique to that worker's attempt; a second worker on the same run must wait until
    the first one's lease has expired.
    """

    def __init__(self, runs: RunLog, clock: Any = time.time) -> None:
        self._runs = runs
        self._clock = clock

    def acquire(self, export: str, run_id: str, owner: str, ttl: float) -> Claim:
        """Take the export's lock for ``run_id``, or learn who holds it."""
        table = self._runs.table()
        entity = self._entity(export, run_id, owner, ttl)
        for _ in range(3):  # a lost race on an expired lock is re-read and decided again
            try:
                table.create_entity(entity)
                return Claim(acquired=True)
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise _failure(f"lock export {export}", exc) from None
            try:
                current = table.get_entity(LOCK_PARTITION, export)
            except ResourceNotFoundError:
                continue  # released in between: try to create again
            except AzureError as exc:
                raise _failure(f"read the lock of export {export}", exc) from None
            holder = _holder(current)
            takeover = holder.run_id == run_id and holder.owner in (QUEUED, owner)
            if not takeover and holder.expires_at > self._clock():
                return Claim(acquired=False, holder=holder)
            try:
                table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                displaced = holder if holder.run_id != run_id else None
                return Claim(acquired=True, displaced=displaced)
            except ResourceModifiedError:
                continue
            except AzureError as exc:
                raise _failure(f"lock export {export}", exc) from None
        return Claim(acquired=False, holder=self.holder(export))

    def holder(self, export: str) -> Holder | None:
        try:
            return _holder(self._runs.table().get_entity(LOCK_PARTITION, export))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _failure(f"read the lock of export {export}", exc) from None

    def renew(
        self, export: str, run_id: str, owner: str, ttl: float, *, new_owner: str | None = None
    ) -> bool:
        """Extend the lease (handing it to ``new_owner`` if given); False when the lock is no
        longer this owner's."""
        table = self._runs.table()
        try:
            current = table.get_entity(LOCK_PARTITION, export)
            holder = _holder(current)
            if (holder.run_id, holder.owner) != (run_id, owner):
                return False
            table.update_entity(
                self._entity(export, run_id, new_owner or owner, ttl),
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
            return True
        except (ResourceNotFoundError, ResourceModifiedError):
            return False
        except AzureError as exc:
            raise _failure(f"renew the lock of export {export}", exc) from None

    def release(self, export: str, run_id: str, owner: str | None = None) -> None:
        """Drop the lock if ``run_id`` (and ``owner``, when given) still holds it."""
        table = self._runs.table()
        try:
            current = table.get_entity(LOCK_PARTITION, export)
            holder = _holder(current)
            if holder.run_id == run_id and owner in (None, holder.owner):
                table.delete_entity(
                    LOCK_PARTITION,
                    export,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceNotFoundError, ResourceModifiedError):
            pass
        except AzureError as exc:
            raise _failure(f"release the lock of export {export}", exc) from None

    def _entity(self, export: str, run_id: str, owner: str, ttl: float) -> dict[str, Any]:
        return {
            "PartitionKey": LOCK_PARTITION,
            "RowKey": export,
            "run_id": run_id,
            "owner": owner,
            "expires_at": self._clock() + ttl,
        }


AUDIENCE_PARTITION = "~audiences"


class CreatedAudiences:
    """Which audience the app created for an export that names none (``audience`` given)."""

    def __init__(self, runs: RunLog) -> None:
        self._runs = runs

    def get(self, export: str) -> str | None:
        try:
            entity = self._runs.table().get_entity(AUDIENCE_PARTITION, export)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _failure(f"read the audience of export {export}", exc) from None
        return str(entity.get("audience_id", "")) or None

    def remember(self, export: str, audience_id: str) -> None:
        entity = {"PartitionKey": AUDIENCE_PARTITION, "RowKey": export, "audience_id": audience_id}
        try:
            self._runs.table().upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise _failure(f"record the audience of export {export}", exc) from None


def _holder(entity: dict[str, Any]) -> Holder:
    return Holder(
        run_id=str(entity.get("run_id", "")),
        owner=str(entity.get("owner", "")),
        expires_at=float(entity.get("expires_at", 0.0)),
    )


def _failure(action: str, exc: AzureError) -> StorageError:
    log.warning("Table Storage failed to %s: %s", action, type(exc).__name__)
    return StorageError(f"run log: could not {action} ({type(exc).__name__})")
