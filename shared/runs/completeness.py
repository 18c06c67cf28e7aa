"""When a snapshot is complete: the one rule the timer and the event path both apply.

Customer Insights writes a snapshot's partitions one by one and ``model.json`` beside them. A
segment's snapshot is complete when its ``model.json`` names partitions in the snapshot's
folder and every one of them exists; otherwise (no model, one still describing an older
snapshot, or one naming a partition that is missing) when its newest file is
``SNAPSHOT_SETTLE_SECONDS`` old (the settle rule), so that a partition missing for good ends
in a failed run that names it. ``Completeness`` reads each ``model.json`` once per decision
and remembers when the snapshots it passed were complete (``complete_at``), for the run's
latency.
"""

from __future__ import annotations

import logging
import posixpath
from datetime import datetime

from shared.adapters.blobsource import BlobSource
from shared.core.definitions import Export, Source
from shared.core.errors import SourceError
from shared.core.layout import BlobEntry, Snapshot, model_blob_name, read_model

log = logging.getLogger(__name__)


class Completeness:
    """The completeness rule for one export at one moment (one decision: not kept)."""

    def __init__(self, source: BlobSource, export: Export, at: datetime, settle: float) -> None:
        self._source, self._export, self._at, self._settle = source, export, at, settle
        self._models: dict[str, tuple[tuple[str, ...], datetime] | None] = {}
        self.complete_at: dict[str, datetime] = {}  # snapshot id -> when it was complete

    def __call__(self, snapshot: Snapshot) -> bool:
        named = self._named(snapshot)
        if named is not None:
            parts, written = named
            if set(parts) <= set(snapshot.partitions):
                self.complete_at[snapshot.id] = max(snapshot.last_modified, written)
                return True
            # model.json names a partition not written yet. Should the folder stay quiet for
            # the settle time regardless, the run reads it and says which one is missing.
        return self._settled(snapshot)

    def _settled(self, snapshot: Snapshot) -> bool:
        if (self._at - snapshot.last_modified).total_seconds() < self._settle:
            return False
        self.complete_at[snapshot.id] = snapshot.last_modified
        return True

    def _named(self, snapshot: Snapshot) -> tuple[tuple[str, ...], datetime] | None:
        """The partitions model.json names in the snapshot's folder, and when it was
        written; None when it names none there (or there is no model.json)."""
        where = self._source_of(snapshot)
        if where is None or snapshot.folder is None:
            return None
        model = self._model(where)
        if model is None:
            return None
        parts, written = model
        inside = tuple(p for p in parts if posixpath.dirname(p) == snapshot.folder)
        return (inside, written) if inside else None

    def _source_of(self, snapshot: Snapshot) -> Source | None:
        folder = snapshot.folder or ""
        return next((s for s in self._export.sources if folder.startswith(s.path + "/")), None)

    def _model(self, where: Source) -> tuple[tuple[str, ...], datetime] | None:
        if where.label not in self._models:
            self._models[where.label] = self._read_model(where)
        return self._models[where.label]

    def _read_model(self, where: Source) -> tuple[tuple[str, ...], datetime] | None:
        name = model_blob_name(where.path)
        found = [b for b in self._source.list(where.container, name) if b.name == name]
        try:
            document = self._source.read_small(where.container, name) if found else None
            if document is None:
                return None
            model = read_model(
                document, entity=where.table_name, container=where.container, where=name
            )
        except SourceError as exc:  # the settle rule decides; the run reports the model
            log.info("Export %s: model.json not used to decide completeness (%s)",
                     self._export.name, exc)  # fmt: skip
            return None
        return model.partitions, _newest(found)


def _newest(blobs: list[BlobEntry]) -> datetime:
    return max(blob.last_modified for blob in blobs)
