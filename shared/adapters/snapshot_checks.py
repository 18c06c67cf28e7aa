"""Adapter for the snapshot checks the event path queued: one marker entity per export and
snapshot in the run table, partition ``~checks``, inserted on condition that none exists, so
that a flood of events for one snapshot (a partition each, delivered at least once) queues
one check. The row key is a digest of the export, segment and snapshot (names only: no
personal data)."""

from __future__ import annotations

import hashlib

from azure.core.exceptions import AzureError

from shared.adapters import tables
from shared.adapters.runlog import table_failure
from shared.core.runrecord import now

CHECK_PARTITION = tables.SNAPSHOT_CHECKS


def _row(export: str, segment: str, snapshot: str) -> str:
    return hashlib.sha256(f"{export}\n{segment}\n{snapshot}".encode()).hexdigest()[:40]


class SnapshotChecks(tables.TableAdapter):
    """Which export snapshots the event path has queued a check of."""

    def mark(self, export: str, segment: str, snapshot: str) -> bool:
        """Record that a check of this snapshot is queued: True for the first to ask, False
        when one already was (by this event's earlier delivery or by another's)."""
        entity = {"PartitionKey": CHECK_PARTITION, "RowKey": _row(export, segment, snapshot),
                  "export": export, "marked_at": now()}  # fmt: skip
        try:
            tables.insert(self._table(), entity)
        except tables.Conflict:
            return False
        except AzureError as exc:
            raise table_failure(f"record a snapshot check of export {export}", exc) from None
        return True

    def forget(self, export: str, segment: str, snapshot: str) -> None:
        """Take a mark back (its check could not be queued): the event's redelivery asks
        again."""
        try:
            tables.delete(self._table(), CHECK_PARTITION, _row(export, segment, snapshot))
        except AzureError as exc:
            raise table_failure(f"take back a snapshot check of export {export}", exc) from None
