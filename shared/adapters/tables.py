"""Table Storage writes that know their own: the one way every table adapter writes.

A write whose reply is lost (applied, but the connection reset before the answer) is sent
again: by the SDK for a replace or a delete (PUT, DELETE), here for an insert or a
transaction (POST, which the SDK never sends twice). On an ETag condition the second send
fails though the first one won: 412 on a replace, 409 EntityAlreadyExists on an insert. So
each write stores a random write ID of its own in the entity (``WRITE_ID``), and a failed
condition is decided on the entity as it now stands: if it holds this write's ID, the write
was applied and the call succeeds, with the entity's ETag; otherwise another writer won
(``Conflict``). A delete leaves nothing to compare: one that finds the entity gone (by this
call's earlier send or by another writer) counts as done, as the SDK itself has it.

Any other failure is the SDK's ``AzureError``, which the adapters translate.

The run table's partitions: one Table holds the run records (partition: the export's name,
``[a-z0-9-]``) and every other table adapter's entities, each in partitions of its own that
start with ``~`` (which no export name can). ``PARTITIONS`` is the one list of them, with the
adapter that owns each; ``TableAdapter`` is how an adapter reaches the table.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

T = TypeVar("T")
WRITE_ID = "write_id"  # the property each write stamps (a random value, never shown)
_SENDS = 3  # sends of an insert or a transaction whose reply was lost (or never sent)
_PAUSE = 0.2  # seconds before the second send, twice that before the third
_CONFLICT_STATUSES = (404, 409, 412)


# -- the run table's partitions (stored data: never rename one) -----------------------------

LOCKS = "~locks"
SPLIT_PREFIX = "~split-"  # one partition per split run: ``~split-<run id>``
EXPORT_DEFINITIONS = "~export"
CONNECTION_DEFINITIONS = "~connection"
SEEDING = "~seed"
TOKEN_REFRESHES = "~tokens"  # noqa: S105 - a partition, not a secret
CONNECT_FLOWS = "~connect"
REQUEST_SLOTS = "~slots"
STATE_GENERATIONS = "~state"
CREATED_AUDIENCES = "~audiences"
LOOKALIKES = "~lookalikes"
SNAPSHOT_CHECKS = "~checks"

PARTITIONS: dict[str, str] = {  # partition (or prefix) -> the adapter that owns it
    LOCKS: "shared.adapters.export_locks",
    SPLIT_PREFIX: "shared.adapters.split_log",
    EXPORT_DEFINITIONS: "shared.adapters.definition_store",
    CONNECTION_DEFINITIONS: "shared.adapters.definition_store",
    SEEDING: "shared.adapters.definition_store",
    TOKEN_REFRESHES: "shared.adapters.connection_status",
    CONNECT_FLOWS: "shared.adapters.connection_status",
    REQUEST_SLOTS: "shared.adapters.request_slots",
    STATE_GENERATIONS: "shared.adapters.state_generations",
    CREATED_AUDIENCES: "shared.adapters.created_audiences",
    LOOKALIKES: "shared.adapters.lookalikes",
    SNAPSHOT_CHECKS: "shared.adapters.snapshot_checks",
}


def partition_problems(partitions: Mapping[str, str] = PARTITIONS) -> list[str]:
    """Partitions that could meet another's entities: one not starting with ``~`` (a run
    record's partition is an export's name), or one that starts with a prefix (a name ending
    in ``-``, such as ``~split-``) of another owner's."""
    problems = [f"{name}: does not start with '~'" for name in partitions if name[:1] != "~"]
    problems += [
        f"{name}: starts with {other} ({partitions[other]})"
        for name in partitions
        for other in partitions
        if name != other and other.endswith("-") and name.startswith(other)
    ]
    return problems


class TableSource(Protocol):
    """What gives the run table's client (``RunLog``, which creates the table on first use)."""

    def table(self) -> TableClient: ...


class TableAdapter:
    """Base of the adapters that keep entities in the run table, in partitions of their own
    (``PARTITIONS``)."""

    def __init__(self, runs: TableSource) -> None:
        self._runs = runs

    def _table(self) -> TableClient:
        """The run table's client (the table is created on first use)."""
        return self._runs.table()


class Conflict(Exception):  # noqa: N818 - reads as what happened, like the SDK's errors
    """The write's condition failed, and not because of this write: another writer's
    entity stands (or it is gone). Nothing was written."""


def insert(table: TableClient, entity: Mapping[str, Any]) -> str:
    """Create ``entity``; its ETag. Conflict when it exists and is not this write's."""
    stamped, write_id = _stamped(entity)

    def create(send: int) -> str:
        try:
            return _etag(table.create_entity(stamped))
        except ResourceExistsError:
            if send and (etag := _own_etag(table, stamped, write_id)) is not None:
                return etag
            raise Conflict from None

    return _resent(create)


def replace(table: TableClient, entity: Mapping[str, Any], etag: str | None) -> str:
    """Replace ``entity`` if its ETag is still ``etag``; the new ETag. Conflict when
    another writer changed (or deleted) it since."""
    stamped, write_id = _stamped(entity)
    try:
        return _etag(
            table.update_entity(
                stamped,
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        )
    except (ResourceModifiedError, ResourceNotFoundError):
        # Also after a send the SDK repeated (its reply lost): decided on what stands now.
        if (found := _own_etag(table, stamped, write_id)) is not None:
            return found
        raise Conflict from None


def upsert(table: TableClient, entity: Mapping[str, Any]) -> str:
    """Write ``entity`` whatever is there (a write that may be repeated); its ETag."""
    stamped, _ = _stamped(entity)
    return _resent(lambda _send: _etag(table.upsert_entity(stamped, mode=UpdateMode.REPLACE)))


def delete(table: TableClient, partition: str, row: str, etag: str | None = None) -> None:
    """Delete the entity (if its ETag is still ``etag``, when given). One already gone
    (deleted by another writer, or by this call's own send whose reply was lost) counts as
    deleted: the SDK reports no error for it either. Conflict when another writer changed
    it since ``etag``."""
    try:
        if etag is None:
            table.delete_entity(partition, row)
        else:
            table.delete_entity(
                partition, row, etag=etag, match_condition=MatchConditions.IfNotModified
            )
    except ResourceNotFoundError:
        return
    except ResourceModifiedError:
        raise Conflict from None


def transact(table: TableClient, operations: list[Any]) -> list[str]:
    """Run the operations (the SDK's ``(verb, entity[, options])`` tuples) as one
    transaction; the ETag each one left (empty for a delete). Every entity it writes gets
    one write ID; when a send whose reply was lost is repeated and refused, the transaction
    was applied if every entity it wrote holds that ID (Conflict otherwise)."""
    write_id = secrets.token_hex(16)
    stamped = [(op[0], {**op[1], WRITE_ID: write_id}, *op[2:]) for op in operations]
    written = [entity for verb, entity, *_ in stamped if verb != "delete"]

    def submit(send: int) -> list[str]:
        try:
            answers = list(table.submit_transaction(stamped))
            return [_etag(answer or {}) for answer in answers]
        except (TableTransactionError, ResourceModifiedError, ResourceExistsError) as exc:
            status = getattr(exc, "status_code", None)
            if isinstance(exc, HttpResponseError) and status not in _CONFLICT_STATUSES:
                raise
            if send and written:
                etags = [
                    _own_etag(table, entity, write_id) if verb != "delete" else ""
                    for verb, entity, *_ in stamped
                ]
                if all(etag is not None for etag in etags):
                    return [etag or "" for etag in etags]
            raise Conflict from None

    return _resent(submit)


def _resent(call: Callable[[int], T]) -> T:
    """``call(send)``, sent again after a send that failed in transit (its reply lost, or
    never sent): at most ``_SENDS`` sends, ``_PAUSE`` apart and longer each time."""
    for send in range(_SENDS):
        try:
            return call(send)
        except (ServiceRequestError, ServiceResponseError):
            if send == _SENDS - 1:
                raise
            time.sleep(_PAUSE * (send + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _stamped(entity: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    write_id = secrets.token_hex(16)
    return {**entity, WRITE_ID: write_id}, write_id


def _own_etag(table: TableClient, entity: Mapping[str, Any], write_id: str) -> str | None:
    """The entity's ETag if, as it stands now, the write ``write_id`` wrote it; else None."""
    try:
        current = table.get_entity(entity["PartitionKey"], entity["RowKey"])
    except ResourceNotFoundError:
        return None
    if current.get(WRITE_ID) != write_id:
        return None
    return str(current.metadata.get("etag") or "")


def _etag(answer: Mapping[str, Any]) -> str:
    return str(answer.get("etag") or "")
