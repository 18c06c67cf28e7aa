"""What a run reads and what an attempt of it is asked to do: the plan, before any stage.

A run reads one snapshot of each of its export's segments (``choose_snapshot`` picks them
when the run is queued; ``plan_run`` finds them again, with each one's model and partitions
in order, when an attempt starts). A run of several segments names one snapshot made of
theirs (``combined``), whose id says which segments' snapshots it stands for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from shared.adapters.blobsource import BlobSource
from shared.core.definitions import Export, Source
from shared.core.errors import SnapshotSettling, SourceError, SourceMalformed
from shared.core.layout import Model, Snapshot, model_blob_name, read_model, snapshots
from shared.core.runrecord import RunRecord

SEGMENTS_JOINED = " + "  # how a several-segment run's snapshot id joins its segments' ids
SEGMENTS_TAG = " @"  # and, after the ids, a tag of which segments they are


@dataclass(frozen=True)
class SegmentPlan:
    """What a run reads of one segment: its snapshot, model (if any), partitions in order."""

    source: Source
    snapshot: Snapshot
    model: Model | None
    partitions: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What a run reads: one snapshot of each of the export's segments, in their order."""

    export: Export
    snapshot: Snapshot  # for several segments, one made of theirs (see ``combined``)
    segments: tuple[SegmentPlan, ...]


def find_snapshots(source: BlobSource, where: Source) -> list[Snapshot]:
    """A segment's snapshots in Blob Storage, oldest first."""
    return snapshots(where.path, source.list(where.container, where.path))


def choose_snapshot(
    source: BlobSource,
    export: Export,
    settled: Callable[[Snapshot], bool],
    *,
    wanted: str | None = None,
    newest_only: bool = False,
) -> Snapshot:
    """The snapshot a run of ``export`` reads: each segment's newest settled one (or the one
    ``wanted`` names), joined. ``newest_only``: Settling while a segment's newest snapshot is
    not settled yet, rather than falling back to its previous one."""
    wanted_ids: list[str | None] = [None] * len(export.sources)
    if wanted is not None:
        wanted_ids = list(segment_ids(export, wanted))
    picks = []
    for where, want in zip(export.sources, wanted_ids, strict=True):
        found = find_snapshots(source, where)
        if not found:
            raise SourceError(
                f"{where.label}: no snapshot found (no yyyy/MM/dd/HHmm/{where.table_name}_<n>.csv "
                f"or {where.table_name}_<epoch>.csv files)"
            )
        if want is not None:
            found = [s for s in found if s.id == want]
            if not found:
                raise SourceError(f"{where.label}: no snapshot {want!r}")
        ready = [s for s in found if settled(s)]
        if not ready or (newest_only and ready[-1] is not found[-1]):
            raise SnapshotSettling(
                f"{where.label}: snapshot {found[-1].id} is still being written (its newest "
                "files are too recent); try again shortly"
            )
        picks.append(ready[-1])
    return combined(picks, export.sources)


def _sources_tag(sources: tuple[Source, ...]) -> str:
    return hashlib.sha256("\n".join(s.label for s in sources).encode()).hexdigest()[:8]


def segment_ids(export: Export, snapshot_id: str) -> tuple[str, ...]:
    """Each segment's snapshot id in a run's ``snapshot_id``; SourceError when it was made for
    other segments (some were added, removed or replaced since)."""
    if len(export.sources) == 1:
        return (snapshot_id,)
    joined, _, tag = snapshot_id.rpartition(SEGMENTS_TAG)
    ids = tuple(joined.split(SEGMENTS_JOINED)) if joined else ()
    if tag != _sources_tag(export.sources) or len(ids) != len(export.sources):
        raise SourceError(
            f"export {export.name!r}: snapshot {snapshot_id!r} is not one of its segments' "
            "(were segments added, removed or replaced since the run was queued?)"
        )
    return ids


def combined(snapshots_: list[Snapshot], sources: tuple[Source, ...]) -> Snapshot:
    """One snapshot standing for one of each segment (itself when there is one segment). Its
    id names each segment's snapshot and, with a tag, which segments they are, so that a
    run of other segments at the same times never counts as the same snapshot."""
    if len(snapshots_) == 1:
        return snapshots_[0]
    fingerprint = hashlib.sha256("\n".join(s.version for s in snapshots_).encode())
    ids = SEGMENTS_JOINED.join(s.id for s in snapshots_)
    return Snapshot(
        id=f"{ids}{SEGMENTS_TAG}{_sources_tag(sources)}",
        taken_at=max(s.taken_at for s in snapshots_),
        partitions=tuple(p for s in snapshots_ for p in s.partitions),
        last_modified=max(s.last_modified for s in snapshots_),
        folder=None,
        version=fingerprint.hexdigest()[:32],
        size=sum(s.size for s in snapshots_),
    )


def plan_run(source: BlobSource, export: Export, snapshot_id: str) -> Plan:
    """What a run of ``snapshot_id`` (as ``choose_snapshot`` named it) reads."""
    ids = segment_ids(export, snapshot_id)
    segments = tuple(
        _segment_plan(source, where, wanted)
        for where, wanted in zip(export.sources, ids, strict=True)
    )
    return Plan(export, combined([s.snapshot for s in segments], export.sources), segments)


def _segment_plan(source: BlobSource, where: Source, snapshot_id: str) -> SegmentPlan:
    found = {s.id: s for s in find_snapshots(source, where)}
    snapshot = found.get(snapshot_id)
    if snapshot is None:
        raise SourceError(f"{where.label}: snapshot {snapshot_id} not found (was it deleted?)")
    if snapshot.folder is None:
        return SegmentPlan(where, snapshot, None, snapshot.partitions)
    model_name = model_blob_name(where.path)
    document = source.read_small(where.container, model_name)
    if document is None:
        return SegmentPlan(where, snapshot, None, snapshot.partitions)
    model = read_model(
        document,
        entity=where.table_name,
        container=where.container,
        where=f"{where.container}/{model_name}",
    )
    listed = [p for p in model.partitions if p.startswith(snapshot.folder + "/")]
    if not listed:
        # model.json describes another snapshot: keep its columns, read the folder's files.
        return SegmentPlan(where, snapshot, model, snapshot.partitions)
    missing = sorted(set(listed) - set(snapshot.partitions))
    if missing:
        raise SourceMalformed(
            f"{where.container}/{model_name} lists partition {missing[0]}, which is not in "
            f"Blob Storage ({len(missing)} missing)"
        )
    return SegmentPlan(where, snapshot, model, tuple(listed))


def partitions(plan: Plan) -> list[tuple[int, str]]:
    """Every partition the run reads, as (segment index, blob name), in order (a split run's
    read job ``n`` reads the ``n``-th)."""
    return [(i, name) for i, segment in enumerate(plan.segments) for name in segment.partitions]


@dataclass(frozen=True)
class AttemptSpec:
    """What one attempt of a run is asked to do: read from the run's record, never written."""

    run_id: str
    audience_id: str
    batch_size: int
    dry_run: bool = False
    allow_large_removal: bool = False

    @classmethod
    def of(cls, record: RunRecord) -> AttemptSpec:
        """What the run's record asks of its next attempt (or job)."""
        return cls(
            run_id=record.run_id,
            audience_id=record.audience_id,
            batch_size=record.batch_size,
            dry_run=record.dry_run,
            allow_large_removal=record.allow_large_removal,
        )
