"""Adapter for a split run's jobs: one Table Storage entity per job, and one per step's gate.

A run split over several instances (``shared.runs.split``) keeps, in the run table's partition
``~split-<run id>``, an entity per job (``read-00002``, ``judge``, ``send-00001``): who
holds it and until when (its lease), whether it is done, its progress (counts and the
checkpoint of its accepted requests) and what it hands to the next step (counts, the names
of its spilled runs; never a digest). A *gate* entity (``gate-read``, ...) is created by the
job that completes a step, with a conditional insert, so exactly one job queues the next
step. Every write is conditional (ETags): a worker that lost a job to another never writes
over it, and one whose own write's reply was lost knows it was applied (``tables``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.adapters import tables
from shared.adapters.runlog import RunLog, table_failure

_JSON = ("progress", "result")


@dataclass
class Entry:
    """One job's (or gate's) entity."""

    name: str
    owner: str = ""
    expires_at: float = 0.0
    done: bool = False
    error: str = ""  # the last attempt's transient failure, for the operator
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    etag: str = ""


class SplitLog(tables.TableAdapter):
    def __init__(self, runs: RunLog, run_id: str) -> None:
        super().__init__(runs)
        self._partition = f"{tables.SPLIT_PREFIX}{run_id}"
        self._what = f"split run {run_id}"

    def get(self, name: str) -> Entry | None:
        try:
            return _entry(self._table().get_entity(self._partition, name))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise table_failure(f"read job {name}", exc, self._what) from None

    def create(self, entry: Entry) -> bool:
        """Insert ``entry``; False when it exists already (another writer was first)."""
        try:
            entry.etag = tables.insert(self._table(), self._entity(entry))
        except tables.Conflict:
            return False
        except AzureError as exc:
            raise table_failure(f"create job {entry.name}", exc, self._what) from None
        return True

    def put(self, entry: Entry) -> None:
        """Write ``entry`` whatever is there (an entity only this writer can be writing)."""
        try:
            entry.etag = tables.upsert(self._table(), self._entity(entry))
        except AzureError as exc:
            raise table_failure(f"save job {entry.name}", exc, self._what) from None

    def update(self, entry: Entry) -> bool:
        """Replace ``entry`` if nobody wrote it since it was read; False otherwise."""
        try:
            entry.etag = tables.replace(self._table(), self._entity(entry), entry.etag)
        except tables.Conflict:
            return False
        except AzureError as exc:
            raise table_failure(f"save job {entry.name}", exc, self._what) from None
        return True

    def entries(self, prefix: str) -> list[Entry]:
        """The entities whose name starts with ``prefix``, by name."""
        where = "PartitionKey eq @p and RowKey ge @low and RowKey lt @high"
        bounds = {"p": self._partition, "low": prefix, "high": prefix + "~"}
        try:
            found = self._table().query_entities(where, parameters=bounds)
            return sorted((_entry(e) for e in found), key=lambda entry: entry.name)
        except AzureError as exc:
            raise table_failure("list jobs", exc, self._what) from None

    def delete_all(self) -> None:
        try:
            table = self._table()
            found = table.query_entities("PartitionKey eq @p", parameters={"p": self._partition})
            for entity in list(found):
                tables.delete(table, self._partition, entity["RowKey"])  # gone: as good
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise table_failure("delete the jobs", exc, self._what) from None

    def _entity(self, entry: Entry) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self._partition,
            "RowKey": entry.name,
            "owner": entry.owner,
            "expires_at": entry.expires_at,
            "done": entry.done,
            "error": entry.error,
        }
        for name in _JSON:
            entity[name] = json.dumps(getattr(entry, name), separators=(",", ":"))
        return entity


def _entry(entity: Any) -> Entry:
    return Entry(
        name=str(entity["RowKey"]),
        owner=str(entity.get("owner", "")),
        expires_at=float(entity.get("expires_at", 0.0)),
        done=bool(entity.get("done", False)),
        error=str(entity.get("error", "")),
        progress=json.loads(entity.get("progress") or "{}"),
        result=json.loads(entity.get("result") or "{}"),
        etag=str(entity.metadata.get("etag") or ""),
    )
