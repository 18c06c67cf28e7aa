"""Adapter for the export locks: one Table Storage entity per export that has an active run.

The entities live in the run table, partition ``~locks`` (export names cannot start with
``~``), and are only ever written with conditions (ETags), so two writers cannot both take a
lock. The rules built on them (who may take a lock over, leases, abandoned runs) are in
``shared.runs.locking``.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.adapters import tables
from shared.adapters.runlog import RunLog, table_failure

LOCK_PARTITION = tables.LOCKS  # export names cannot start with "~", so no run shares it


class LockOwner(enum.StrEnum):
    """Who holds an export's lock, when not a worker (a worker holds it with a token of its
    own, unique to its attempt)."""

    QUEUED = "queued"  # the run waits in the queue: any worker may take it over
    SPLIT = "split"  # the run's jobs are on the queue (shared.runs.split); each one renews it


QUEUED = LockOwner.QUEUED
SPLIT = LockOwner.SPLIT


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


class ExportLocks(tables.TableAdapter):
    """At most one active run per export: a lock entity per export, taken and renewed with
    conditional writes (ETags), that expires if its holder stops renewing it (a crash).

    The owner is ``QUEUED`` from the moment a run is queued until a worker takes it, then a
    token unique to that worker's attempt; a second worker on the same run must wait until
    the first one's lease has expired.
    """

    def __init__(self, runs: RunLog, clock: Any = time.time) -> None:
        super().__init__(runs)
        self._clock = clock

    def acquire(self, export: str, run_id: str, owner: str, ttl: float) -> Claim:
        """Take the export's lock for ``run_id``, or learn who holds it."""
        table = self._table()
        entity = self._entity(export, run_id, owner, ttl)
        for _ in range(3):  # a lost race on an expired lock is re-read and decided again
            try:
                tables.insert(table, entity)
                return Claim(acquired=True)
            except tables.Conflict:
                pass
            except AzureError as exc:
                raise table_failure(f"lock export {export}", exc) from None
            try:
                current = table.get_entity(LOCK_PARTITION, export)
            except ResourceNotFoundError:
                continue  # released in between: try to create again
            except AzureError as exc:
                raise table_failure(f"read the lock of export {export}", exc) from None
            holder = _holder(current)
            takeover = holder.run_id == run_id and holder.owner in (QUEUED, owner)
            if not takeover and holder.expires_at > self._clock():
                return Claim(acquired=False, holder=holder)
            try:
                tables.replace(table, entity, current.metadata["etag"])
                displaced = holder if holder.run_id != run_id else None
                return Claim(acquired=True, displaced=displaced)
            except tables.Conflict:
                continue
            except AzureError as exc:
                raise table_failure(f"lock export {export}", exc) from None
        return Claim(acquired=False, holder=self.holder(export))

    def holder(self, export: str) -> Holder | None:
        try:
            return _holder(self._table().get_entity(LOCK_PARTITION, export))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise table_failure(f"read the lock of export {export}", exc) from None

    def renew(
        self, export: str, run_id: str, owner: str, ttl: float, *, new_owner: str | None = None
    ) -> bool:
        """Extend the lease (handing it to ``new_owner`` if given); False when the lock is no
        longer this owner's."""
        table = self._table()
        try:
            current = table.get_entity(LOCK_PARTITION, export)
            holder = _holder(current)
            if (holder.run_id, holder.owner) != (run_id, owner):
                return False
            entity = self._entity(export, run_id, new_owner or owner, ttl)
            tables.replace(table, entity, current.metadata["etag"])
            return True
        except (ResourceNotFoundError, tables.Conflict):
            return False
        except AzureError as exc:
            raise table_failure(f"renew the lock of export {export}", exc) from None

    def release(self, export: str, run_id: str, owner: str | None = None) -> None:
        """Drop the lock if ``run_id`` (and ``owner``, when given) still holds it."""
        table = self._table()
        try:
            current = table.get_entity(LOCK_PARTITION, export)
            holder = _holder(current)
            if holder.run_id == run_id and owner in (None, holder.owner):
                # Gone (False) is as good as deleted: by this call's own lost reply, or by
                # another writer, the lock is not this run's any more either way.
                tables.delete(table, LOCK_PARTITION, export, current.metadata["etag"])
        except (ResourceNotFoundError, tables.Conflict):
            pass
        except AzureError as exc:
            raise table_failure(f"release the lock of export {export}", exc) from None

    def _entity(self, export: str, run_id: str, owner: str, ttl: float) -> dict[str, Any]:
        return {
            "PartitionKey": LOCK_PARTITION,
            "RowKey": export,
            "run_id": run_id,
            "owner": owner,
            "expires_at": self._clock() + ttl,
        }


def _holder(entity: dict[str, Any]) -> Holder:
    return Holder(
        run_id=str(entity.get("run_id", "")),
        owner=str(entity.get("owner", "")),
        expires_at=float(entity.get("expires_at", 0.0)),
    )
