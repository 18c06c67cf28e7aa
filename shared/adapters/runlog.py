"""Adapter for the run log: one Table Storage entity per export run.

Entities are partitioned by export name; the row key is derived from the run id so that a
plain query returns an export's runs newest first. Only counts, names and operator-readable
error texts are stored, never identifier values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.data.tables import TableClient

from shared.adapters import tables
from shared.core.errors import RecordChanged, StorageError
from shared.core.runrecord import RunRecord, is_run_id, row_key

log = logging.getLogger(__name__)

_JSON_FIELDS = ("by_type", "by_segment", "safeguard", "jobs", "audience_check")


def _to_entity(record: RunRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": record.export, "RowKey": row_key(record.run_id)}
    entity.update(record.as_dict())
    for name in _JSON_FIELDS:
        entity[name] = json.dumps(entity[name], separators=(",", ":"))
    return entity


def _from_entity(entity: Any) -> RunRecord:
    values = dict(entity)
    for name in _JSON_FIELDS:
        if isinstance(values.get(name), str):
            values[name] = json.loads(values[name])
    if values.get("approximate_number_users") == -1:  # written by earlier versions
        values["approximate_number_users"] = None
    record = RunRecord.from_dict(values)
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
                raise table_failure("create the run table", exc, endpoint=self._table.url) from None
            self._ready = True
        return self._table

    def save(self, record: RunRecord) -> None:
        """Write the whole record, on one condition: nobody else wrote it since this copy was
        read or last saved (its ETag). A new record (no ETag) must not exist yet.

        Raises RecordChanged when the condition fails: the stored record is left as the
        other writer left it, and the caller decides again from a fresh read (see
        ``shared.runs.service``: the first writer wins, and an ended record never changes). A
        write of this copy's own whose reply was lost is not a change by another writer
        (``shared.adapters.tables``).
        """
        entity = _to_entity(record)
        try:
            if record.etag:
                etag = tables.replace(self.table(), entity, record.etag)
            else:
                etag = tables.insert(self.table(), entity)
        except tables.Conflict:
            raise RecordChanged(
                f"run {record.run_id}: its record was changed by another writer meanwhile"
            ) from None
        except AzureError as exc:
            raise table_failure(f"save run {record.run_id}", exc) from None
        record.etag = etag

    def get(self, export: str, run_id: str) -> RunRecord | None:
        if not is_run_id(run_id):
            return None
        try:
            return _from_entity(self.table().get_entity(export, row_key(run_id)))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise table_failure(f"read run {run_id}", exc) from None

    def recent(self, export: str, limit: int = 20) -> list[RunRecord]:
        """The export's runs, newest first."""
        return self._query("PartitionKey eq @export", {"export": export}, limit)

    def page(
        self, export: str, limit: int, *, after: str = "", where: Mapping[str, object] | None = None
    ) -> tuple[list[RunRecord], str]:
        """Up to ``limit`` of the export's runs, newest first, older than run ``after`` (a
        run ID, "" for the newest) and matching ``where`` (record fields: equal values);
        with the run ID to continue after, or "" when no run is left."""
        clauses = ["PartitionKey eq @export"]
        parameters: dict[str, Any] = {"export": export}
        if after:
            clauses.append("RowKey gt @after")
            parameters["after"] = row_key(after)
        for index, (name, value) in enumerate(sorted((where or {}).items())):
            clauses.append(f"{name} eq @p{index}")
            parameters[f"p{index}"] = value
        found = self._query(" and ".join(clauses), parameters, limit + 1)
        more = len(found) > limit
        return found[:limit], found[limit - 1].run_id if more else ""

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
            raise table_failure("query runs", exc) from None


def table_failure(
    action: str, exc: AzureError, what: str = "run log", endpoint: str = ""
) -> StorageError:
    """The StorageError for a failed Table Storage call (the SDK's message is not kept: it
    can quote the request). When nothing answered at all, it names the endpoint (scheme, host
    and path only: never a key or a SAS query) and the likely fix."""
    log.warning("Table Storage failed to %s: %s", action, type(exc).__name__)
    message = f"{what}: could not {action} ({type(exc).__name__})"
    if isinstance(exc, ServiceRequestError):
        message += unreachable(endpoint)
    return StorageError(message)


def unreachable(endpoint: str) -> str:
    """What to say when no storage answered at ``endpoint``: where, and the likely fix."""
    parts = urlsplit(endpoint)
    where = f" at {parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else ""
    if parts.hostname in {"127.0.0.1", "localhost", "::1"}:
        return (
            f": nothing answers{where}; start Azurite (npx azurite --silent --location .azurite "
            "--skipApiVersionCheck --disableTelemetry) or point AzureWebJobsStorage elsewhere"
        )
    return f": nothing answers{where}; check AzureWebJobsStorage and the network to the account"
