"""One export run: from a snapshot in Blob Storage to identifiers accepted by Snapchat.

First the snapshot is read once: each partition's bytes go through Arrow's CSV parser, every
identifier column the export maps is normalised and hashed as whole blocks of cells, and the
digests are collected per kind (``shared.export.digest_pool``: held up to a memory budget,
spilled encrypted beyond it). Then, per kind, its distinct digests come out sorted, bucket
by bucket: in add mode each bucket's are sent in batches (for an export of one segment, most
of them go while the snapshot is still read: ``shared.export.adds_while_reading``); in
mirror mode each bucket is merged with the same bucket of the last successful run's set
(``shared.adapters.statestore``) to find what to add and remove. One background thread sends
while the next body is prepared (at most ``_IN_FLIGHT`` at once). Memory stays bounded by
the budget and one bucket, whatever the segment's size. The caller saves the attempt's
``Progress`` after every accepted request, with a checkpoint that lets a later delivery
resume the run.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.adapters.blobsource import BlobSource
from shared.adapters.snapchat import SnapchatClient
from shared.adapters.spillstore import SpillStore
from shared.adapters.statestore import TOUCHED, StateStore, Writer
from shared.core import digestsets, identifiers, safeguard
from shared.core.csvstream import column_blocks
from shared.core.definitions import Export, Mode, Source
from shared.core.errors import RemovalBlocked, RetryableError, SnapshotSettling, SourceError
from shared.core.layout import Model, Snapshot, model_blob_name, read_model, snapshots
from shared.core.mirror_diff import diff
from shared.core.runrecord import Progress
from shared.export import adds_while_reading
from shared.export.digest_pool import Collected

log = logging.getLogger(__name__)

_IN_FLIGHT = 2  # request bodies built ahead of the one being sent
_SKIPPED = -1  # what the sender thread returns for a request it did not send


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


def plan(source: BlobSource, export: Export, snapshot_id: str) -> Plan:
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
        raise SourceError(
            f"{where.container}/{model_name} lists partition {missing[0]}, which is not in "
            f"Blob Storage ({len(missing)} missing)"
        )
    return SegmentPlan(where, snapshot, model, tuple(listed))


@dataclass(frozen=True)
class AttemptSpec:
    """What one attempt of a run is asked to do: read from the run's record, never written."""

    run_id: str
    audience_id: str
    batch_size: int
    dry_run: bool = False
    allow_large_removal: bool = False


def run(
    plan: Plan,
    source: BlobSource,
    client: SnapchatClient,
    attempt: AttemptSpec,
    *,
    resume: Progress,
    progress: Progress,
    on_progress: Callable[[Progress], None],
    spill: SpillStore,
    memory_budget: int,
    check_lease: Callable[[], None] = lambda: None,
    state: StateStore | None = None,
) -> None:
    """Bring the audience ``attempt.audience_id`` up to date with the plan's snapshot.

    ``resume`` is what the previous attempt of the run did; ``progress`` (new, the caller's)
    is filled in with what this one does, also when it fails, and handed to ``on_progress``
    after each accepted request.

    One read of the snapshot for all the identifier kinds the export maps, then per kind:
    in ``add`` mode every distinct valid identifier is sent; in ``mirror`` mode only new
    identifiers are added and only those that left are removed, and the new state is
    written once every kind's requests were accepted. ``attempt.dry_run`` sends nothing.
    Spilled digests (``spill``, over ``memory_budget`` bytes) are deleted when it ends.

    Requests are a pure function of the snapshot, the state and ``attempt.batch_size``, so
    an attempt after one that left ``resume.batches`` accepted requests rebuilds the same
    ones and skips those (counted as ``resumed``) instead of sending them again.
    """
    export = plan.export
    same_files = resume.source_version == plan.snapshot.version
    accepted = resume.batches if same_files else 0
    if accepted != resume.batches:
        log.warning(
            "Run %s: the snapshot's files changed since the last attempt; starting over",
            attempt.run_id,
        )
    progress.source_version = plan.snapshot.version
    sender = Sender(client, attempt, progress, accepted=accepted, expected=resume.checkpoint,
                     on_progress=on_progress, check_lease=check_lease)  # fmt: skip
    spill.delete_all()  # what a crashed attempt of the run may have left
    try:
        if export.mode is Mode.ADD and len(plan.segments) == 1:
            _add_while_reading(plan, source, attempt, progress=progress, sender=sender,
                               spill=spill, memory_budget=memory_budget,
                               check_lease=check_lease)  # fmt: skip
            return
        collected = Collected(spill, memory_budget, (kind.schema for kind, _ in export.columns))
        tallies = scan(plan, source, progress=progress, collected=collected,
                       publish=sender.publish, check_lease=check_lease)  # fmt: skip
        progress.spilled_bytes = collected.spilled_bytes
        require_rows(plan, progress)
        if export.mode is Mode.MIRROR:
            assert state is not None, "mirror mode needs a state store"
            _mirror(plan, collected, tallies=tallies, state=state, attempt=attempt,
                    progress=progress, sender=sender, check_lease=check_lease)  # fmt: skip
        else:
            _add(plan, collected, tallies=tallies, attempt=attempt, progress=progress,
                 sender=sender)  # fmt: skip
    except BaseException:
        # The checkpoint never goes back: an attempt that failed while it was still
        # skipping what an earlier one delivered must not forget those requests (unless
        # it found them to differ, and starts over).
        if not sender.restart and progress.batches < accepted:
            progress.batches, progress.checkpoint = accepted, resume.checkpoint
        raise
    finally:
        spill.delete_all()


_WORKERS = 2  # threads normalising and hashing blocks (Arrow and DataFusion release the GIL)


def scan(
    plan: Plan,
    source: BlobSource,
    *,
    progress: Progress,
    collected: Collected,
    publish: Callable[[], None],
    check_lease: Callable[[], None],
    adds: adds_while_reading.EarlyAdds | None = None,
) -> dict[str, identifiers.Tally]:
    """Read every segment's partitions once, collecting each kind's digests (with ``adds``:
    handing them to it, in the order they are read); count the rows (per segment when there
    are several). Blocks are normalised and hashed on ``_WORKERS`` threads while the next
    ones are parsed; at most ``2 * _WORKERS`` are in hand at once."""
    export = plan.export
    tallies = {kind.schema: identifiers.Tally() for kind, _ in export.columns}
    for kind, _ in export.columns:
        progress.by_type.setdefault(kind.schema, {})

    def digest_block(cells: tuple[Any, ...]) -> list[tuple[str, bytes, identifiers.Tally]]:
        found = []
        for (kind, _), column in zip(export.columns, cells, strict=True):
            tally = identifiers.Tally()
            digests = identifiers.digest_column(kind, column, tally, export.default_country_code)
            found.append((kind.schema, digests, tally))
        return found

    def take(block: Future[list[tuple[str, bytes, identifiers.Tally]]]) -> None:
        for schema, digests, tally in block.result():
            if adds is None:
                collected.add(schema, digests)
            else:
                adds.add(schema, digests)
            _add_tally(tallies[schema], tally)
        progress.rows_read = progress.rows_scanned = max(t.rows for t in tallies.values())
        progress.spilled_bytes = collected.spilled_bytes
        publish()
        check_lease()

    try:
        _read_all(plan, source, progress, tallies, digest=digest_block, take=take)
    except BaseException:
        # Let a spill in progress end before the caller deletes the run's spilled files.
        with contextlib.suppress(Exception):
            collected.settle()
        raise
    collected.settle()
    return tallies


def _read_all(
    plan: Plan,
    source: BlobSource,
    progress: Progress,
    tallies: dict[str, identifiers.Tally],
    *,
    digest: Callable[[tuple[Any, ...]], list[tuple[str, bytes, identifiers.Tally]]],
    take: Callable[[Future[list[tuple[str, bytes, identifiers.Tally]]]], None],
) -> None:
    columns = [column for _, column in plan.export.columns]
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="digest") as pool:
        pending: deque[Future[list[tuple[str, bytes, identifiers.Tally]]]] = deque()
        for segment in plan.segments:
            before = max(t.rows for t in tallies.values())
            blocks = column_blocks(
                segment.partitions,
                functools.partial(source.open, segment.source.container),
                columns=columns,
                model=segment.model,
            )
            for _, cells in blocks:
                pending.append(pool.submit(digest, cells))
                while len(pending) >= 2 * _WORKERS:
                    take(pending.popleft())
            while pending:
                take(pending.popleft())
            if len(plan.segments) > 1:
                rows = max(t.rows for t in tallies.values()) - before
                progress.by_segment[segment.source.label] = {"rows": rows}


def _add_tally(total: identifiers.Tally, part: identifiers.Tally) -> None:
    total.rows += part.rows
    total.empty += part.empty
    total.invalid += part.invalid
    total.prehashed += part.prehashed


def _segment_rows(plan: Plan, progress: Progress, segment: SegmentPlan) -> int:
    if len(plan.segments) == 1:
        return progress.rows_read
    return progress.by_segment.get(segment.source.label, {}).get("rows", 0)


def require_rows(plan: Plan, progress: Progress) -> None:
    """Every segment must hold data rows: an empty segment export is treated as a fault (in
    mirror mode it would otherwise remove its members from the audience). Checked after the
    read and before anything is sent."""
    empty = [s for s in plan.segments if _segment_rows(plan, progress, s) == 0]
    if empty:
        where = ", ".join(s.source.label for s in empty)
        snapshot = empty[0].snapshot.id
        raise SourceError(
            f"{where}: snapshot {snapshot} holds no data rows; nothing was sent "
            "(an empty segment export is treated as a fault)"
        )


def _add_while_reading(
    plan: Plan,
    source: BlobSource,
    attempt: AttemptSpec,
    *,
    progress: Progress,
    sender: Sender,
    spill: SpillStore,
    memory_budget: int,
    check_lease: Callable[[], None],
) -> None:
    """Add mode on one segment: send while reading (``adds_while_reading``), then the rest."""
    kinds = {kind.schema: kind for kind, _ in plan.export.columns}
    collected = Collected(spill, memory_budget, adds_while_reading.collected_names(kinds))
    with sender:
        adds = adds_while_reading.EarlyAdds(
            collected, sender, kinds, progress.by_type, attempt.batch_size
        )
        tallies = scan(plan, source, progress=progress, collected=collected,
                       publish=sender.publish, check_lease=check_lease, adds=adds)  # fmt: skip
        try:
            adds.finish()
            progress.spilled_bytes = collected.spilled_bytes
            require_rows(plan, progress)
            for schema, kind in kinds.items():
                distinct = adds.send_rest(schema)
                count_kind(kind, tallies[schema], adds.read(schema) - distinct, progress)
        except BaseException:
            # As in scan: a spill that finish() started ends before the files are deleted.
            with contextlib.suppress(Exception):
                collected.settle()
            raise
        progress.spilled_bytes = collected.spilled_bytes


def _add(
    plan: Plan,
    collected: Collected,
    *,
    tallies: dict[str, identifiers.Tally],
    attempt: AttemptSpec,
    progress: Progress,
    sender: Sender,
) -> None:
    """Send every distinct valid identifier, bucket by bucket."""
    with sender:
        for kind, _ in plan.export.columns:
            sender.counts = progress.by_type[kind.schema]
            distinct = add_kind(collected, kind, sender, attempt.batch_size)
            count_kind(kind, tallies[kind.schema], collected.read(kind.schema) - distinct, progress)


def add_kind(
    collected: Collected,
    kind: identifiers.IdentifierType,
    sender: Sender,
    batch_size: int,
    within: tuple[int, int] = (0, digestsets.LEADING_BYTES),
) -> int:
    """Send the kind's distinct digests (whose leading byte is ``within``: a split run's send
    job) in batches, bucket by bucket, until all were accepted; how many there were."""
    distinct = 0
    for _, bucket in collected.buckets(kind.schema, within):
        distinct += digestsets.count(bucket)
        for batch in digestsets.chunks(bucket, batch_size):
            sender.send("POST", kind, batch)
    sender.drain()
    return distinct


@dataclass
class KindChanges:
    """One kind's mirror diff over all its buckets, counted (the digests are not kept)."""

    distinct: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    managed: int = 0
    confirmed: int = 0
    touched: Writer | None = None  # the kind's new touched set, staged, not committed


def _mirror(
    plan: Plan,
    collected: Collected,
    *,
    tallies: dict[str, identifiers.Tally],
    state: StateStore,
    attempt: AttemptSpec,
    progress: Progress,
    sender: Sender,
    check_lease: Callable[[], None],
) -> None:
    """Work out every kind's changes first, send only then.

    So a snapshot that turns out empty or malformed changes nothing, and the removal
    safeguard judges the whole run before any request. The first pass over the buckets
    counts the changes and stages each kind's new ``touched`` set (what it is about to
    send, with what earlier failed runs left); it is committed just before the kind's
    requests, so that if the run fails half way the next run knows which identifiers'
    presence is uncertain. The second pass works the same changes out again, sends them,
    and stages the new state, committed once every kind's requests were accepted.
    """
    export, audience = plan.export, attempt.audience_id
    changes: dict[str, KindChanges] = {}
    for kind, _ in export.columns:
        schema = kind.schema
        changes[schema] = mirror_changes(collected, state, export.name, audience, schema,
                                   stage=not attempt.dry_run)  # fmt: skip
        repeats = collected.read(schema) - changes[schema].distinct
        count_kind(kind, tallies[schema], repeats, progress)
    check_removals(export, attempt, progress, changes)
    written: list[Writer] = []
    with sender:
        for kind, _ in export.columns:
            schema = kind.schema
            found = changes[schema]
            counts = progress.by_type[schema]
            sender.counts = counts
            counts["unchanged"] = found.unchanged
            progress.unchanged += found.unchanged
            if found.touched is not None and (found.added or found.removed):
                found.touched.commit()
            writer = None if attempt.dry_run else state.writer(export.name, audience, schema)
            pairs = paired_buckets(collected, state, export.name, audience, schema)
            for _, bucket, old, touched in pairs:
                change = diff(bucket, old, touched)
                for batch in digestsets.chunks(change.added, attempt.batch_size):
                    sender.send("POST", kind, batch)
                for batch in digestsets.chunks(change.removed, attempt.batch_size):
                    sender.send("DELETE", kind, batch)
                if writer is not None:
                    writer.add(bucket)
            sender.drain()
            if writer is not None:
                written.append(writer)
    if attempt.dry_run:
        return
    check_lease()
    for writer in written:
        writer.commit()
    for kind, _ in export.columns:
        state.delete(export.name, audience, kind.schema, TOUCHED)


def mirror_changes(
    collected: Collected, state: StateStore, export: str, audience: str, schema: str, *, stage: bool
) -> KindChanges:
    """The first pass over a kind's buckets: count its changes; with ``stage``, stage its
    new touched set."""
    found = KindChanges()
    if stage:
        found.touched = state.writer(export, audience, schema, TOUCHED)
    for _, bucket, old, touched in paired_buckets(collected, state, export, audience, schema):
        change = diff(bucket, old, touched)
        found.distinct += digestsets.count(bucket)
        found.added += digestsets.count(change.added)
        found.removed += digestsets.count(change.removed)
        found.unchanged += change.unchanged
        found.managed += change.managed
        found.confirmed += change.confirmed
        if found.touched is not None:
            found.touched.add(digestsets.union(touched, change.added, change.removed))
    return found


def paired_buckets(
    collected: Collected,
    state: StateStore,
    export: str,
    audience: str,
    schema: str,
    *,
    ranges: tuple[tuple[int, int], ...] = ((0, digestsets.LEADING_BYTES),),
) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """Per bucket of the kind's new set: the index of the leading-byte range it is in
    (``ranges``: ascending, covering them all; a split run's send jobs), it, and the same
    bucket of the stored state and touched sets."""
    old = digestsets.SortedReader(state.read(export, audience, schema))
    touched = digestsets.SortedReader(state.read(export, audience, schema, TOUCHED))
    for index, within in enumerate(ranges):
        for high, bucket in collected.buckets(schema, within):
            yield index, bucket, old.until(high), touched.until(high)


def check_removals(
    export: Export, attempt: AttemptSpec, progress: Progress, changes: dict[str, KindChanges]
) -> None:
    """The removal safeguard, before anything is sent: record its decision, and refuse the
    run when it is over the export's limits and the operator did not allow it."""
    kinds = [
        safeguard.KindChange(
            schema, found.managed, found.removed, found.distinct, confirmed=found.confirmed
        )
        for schema, found in changes.items()
    ]
    verdict = safeguard.judge(
        kinds,
        export.removal_limits,
        audience=attempt.audience_id or "(not created yet)",
        allow_large_removal=attempt.allow_large_removal,
        dry_run=attempt.dry_run,
    )
    progress.safeguard = verdict.as_dict()
    if verdict.decision is safeguard.Decision.BLOCKED:
        raise RemovalBlocked(
            f"removal safeguard: {'; '.join(verdict.problems)}. {safeguard.ADVICE}"
        )
    if verdict.over_limit:
        log.warning(
            "Run %s: removal safeguard %s: %s",
            attempt.run_id,
            verdict.decision.value,
            "; ".join(verdict.problems),
        )


def count_kind(
    kind: identifiers.IdentifierType, tally: identifiers.Tally, repeats: int, progress: Progress
) -> None:
    tally.duplicates = repeats
    counts = progress.by_type[kind.schema]
    counts.update(
        rows=tally.rows,
        empty=tally.empty,
        invalid=tally.invalid,
        prehashed=tally.prehashed,
        duplicates=tally.duplicates,
    )
    progress.empty += tally.empty
    progress.invalid += tally.invalid
    progress.prehashed += tally.prehashed
    progress.duplicates += tally.duplicates


_PUBLISH_SECONDS = 1.0  # progress while reading, or of a dry run, is saved at most this often


class Sender:
    """Sends users requests one after another on a background thread, while the caller
    prepares the next; keeps the run's checkpoint (``progress.batches``) an unbroken count of
    accepted requests; skips the requests an earlier attempt already delivered."""

    def __init__(
        self,
        client: SnapchatClient,
        attempt: AttemptSpec,
        progress: Progress,
        *,
        accepted: int,
        expected: str,
        on_progress: Callable[[Progress], None],
        check_lease: Callable[[], None],
    ) -> None:
        self._client = client
        self._attempt = attempt
        self._progress = progress
        self._accepted = accepted
        self._on_progress = on_progress
        self._check_lease = check_lease
        self._index = 0
        self._pending: deque[tuple[Future[int], str, int, dict[str, int], str]] = deque()
        self._failed = threading.Event()
        # A running fingerprint of every request's content: the checkpoint carries it, so a
        # resumed attempt can tell whether it rebuilt the same requests (same code, same
        # definition) before it skips any; if not, the run starts over.
        self._fingerprint = hashlib.sha256()
        self._expected = expected if accepted else ""
        self.restart = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload")
        self.counts: dict[str, int] = {}  # the current kind's entry of progress.by_type
        self._published = time.monotonic()

    def send(self, method: str, kind: identifiers.IdentifierType, batch: bytes) -> None:
        """Send one request of ``batch`` (concatenated digests)."""
        index, self._index = self._index, self._index + 1
        attempt, progress = self._attempt, self._progress
        size = digestsets.count(batch)
        self._fingerprint.update(f"{method} {kind.schema} {size}\n".encode())
        self._fingerprint.update(batch)
        mark = self._fingerprint.hexdigest()[:32]
        if index < self._accepted:
            # Delivered by an earlier attempt of this run: count, send nothing.
            if index == self._accepted - 1 and self._expected and mark != self._expected:
                self.restart = True
                progress.batches = progress.uploaded = progress.resumed = 0
                progress.added = progress.removed = 0
                progress.checkpoint = ""
                raise RetryableError(
                    f"run {attempt.run_id}: the requests rebuilt for resuming differ from those "
                    "delivered before (the app or the definition changed); starting over"
                )
            self._account(method, size, self.counts, resumed=True)
            progress.checkpoint = mark
            return
        if attempt.dry_run:
            self._account(method, size, self.counts, resumed=False)
            self.publish()
            return
        self._check_lease()
        body = identifiers.UsersBody(kind.schema, batch)
        # On the sender thread, in this thread's context: the request's span is the run's
        # child, and its log records carry the run's IDs.
        future = self._pool.submit(contextvars.copy_context().run, self._send_one, method, body)
        self._pending.append((future, method, size, self.counts, mark))
        while len(self._pending) >= _IN_FLIGHT:
            self._settle_oldest()

    def _send_one(self, method: str, body: identifiers.UsersBody) -> int:
        # Runs on the sender thread. Once a request has failed, those queued behind it must
        # not reach Snapchat: the checkpoint only counts an unbroken prefix of accepted
        # requests, and a resumed run sends the rest.
        if self._failed.is_set():
            return _SKIPPED
        try:
            if method == "POST":
                return self._client.add_users(self._attempt.audience_id, body)
            return self._client.remove_users(self._attempt.audience_id, body)
        except BaseException:
            self._failed.set()
            raise

    def _settle_oldest(self) -> None:
        future, method, size, counts, mark = self._pending.popleft()
        future.result()
        self._account(method, size, counts, resumed=False)
        self._progress.checkpoint = mark
        self.publish(now=True)  # each accepted request: the checkpoint moves on

    def publish(self, *, now: bool = False) -> None:
        moment = time.monotonic()
        if now or moment - self._published >= _PUBLISH_SECONDS:
            self._published = moment
            self._on_progress(self._progress)

    def _account(self, method: str, size: int, counts: dict[str, int], *, resumed: bool) -> None:
        attempt, progress = self._attempt, self._progress
        if not attempt.dry_run:
            progress.batches += 1  # accepted requests: a dry run sends none
        key = "added" if method == "POST" else "removed"
        counts[key] = counts.get(key, 0) + size
        if method == "POST":
            progress.added += size
            progress.uploaded += 0 if attempt.dry_run else size
        else:
            progress.removed += size
        if resumed:
            progress.resumed += size

    def drain(self) -> None:
        while self._pending:
            self._settle_oldest()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        for future, *_ in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        # A request that was in flight when the run failed may still have been accepted:
        # count the unbroken prefix of those, so the checkpoint includes them.
        while self._pending and self._pending[0][0].done():
            future, method, size, counts, mark = self._pending.popleft()
            if future.cancelled() or future.exception() is not None or future.result() < 0:
                break
            self._account(method, size, counts, resumed=False)
            self._progress.checkpoint = mark
