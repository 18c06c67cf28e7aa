"""One export run: from a snapshot in Blob Storage to identifiers accepted by Snapchat.

Per identifier kind, rows stream through: partition bytes -> CSV cells -> normalised digests
-> first occurrences -> batches -> request bodies. In add mode each batch is sent as soon as
it is ready, one background thread sending while the next is prepared (at most
``_IN_FLIGHT`` bodies at once); in mirror mode each kind's set is collected first and merged
with the last successful run's (see ``shared.adapters.statestore``). Memory stays bounded by
the batch size and the de-duplication set. The caller saves the attempt's ``Progress`` after
every accepted request, with a checkpoint that lets a later delivery resume the run.
"""

from __future__ import annotations

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

from shared.adapters.blobsource import BlobSource
from shared.adapters.snapchat import SnapchatClient
from shared.adapters.statestore import TOUCHED, StateStore
from shared.core import identifiers, safeguard
from shared.core.csvstream import column_cells
from shared.core.definitions import Export, Mode, Source
from shared.core.errors import RemovalBlocked, RetryableError, SnapshotSettling, SourceError
from shared.core.layout import Model, Snapshot, model_blob_name, read_model, snapshots
from shared.core.mirror_diff import Diff, diff
from shared.core.runrecord import Progress

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
    check_lease: Callable[[], None] = lambda: None,
    state: StateStore | None = None,
) -> None:
    """Bring the audience ``attempt.audience_id`` up to date with the plan's snapshot.

    ``resume`` is what the previous attempt of the run did; ``progress`` (new, the caller's)
    is filled in with what this one does, also when it fails, and handed to ``on_progress``
    after each accepted request.

    One pass over the snapshot per identifier kind the export maps. In ``add`` mode every
    distinct valid identifier is sent as it streams by. In ``mirror`` mode the kind's whole
    set is collected, sorted and merged with the state of the last successful run: only
    new identifiers are added and only those that left are removed, and the new state is
    written once every kind's requests were accepted. ``attempt.dry_run`` sends nothing.

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
    sender = _Sender(client, attempt, progress, accepted=accepted, expected=resume.checkpoint,
                     on_progress=on_progress, check_lease=check_lease)  # fmt: skip
    try:
        if export.mode is Mode.MIRROR:
            assert state is not None, "mirror mode needs a state store"
            _mirror(plan, source, state, attempt, progress, sender=sender, check_lease=check_lease)
        else:
            _add(plan, source, attempt, progress, sender)
    except BaseException:
        # The checkpoint never goes back: an attempt that failed while it was still
        # skipping what an earlier one delivered must not forget those requests (unless
        # it found them to differ, and starts over).
        if not sender.restart and progress.batches < accepted:
            progress.batches, progress.checkpoint = accepted, resume.checkpoint
        raise


def _cells(plan: Plan, source: BlobSource, column: str, progress: Progress) -> Iterator[str]:
    """The column's cells of every segment, one after another (so that de-duplication and
    the mirror diff work on their union), counting each segment's rows in ``by_segment``.
    One segment (the usual case) is read as it is: ``rows_read`` counts its rows, and the
    export loop carries no per-row work for the count."""
    if len(plan.segments) == 1:
        return _segment_cells(plan.segments[0], source, column)
    return _counted_cells(plan, source, column, progress)


def _segment_cells(segment: SegmentPlan, source: BlobSource, column: str) -> Iterator[str]:
    return column_cells(
        segment.partitions,
        functools.partial(source.open, segment.source.container),
        column=column,
        model=segment.model,
    )


def _counted_cells(
    plan: Plan, source: BlobSource, column: str, progress: Progress
) -> Iterator[str]:
    for segment in plan.segments:
        rows = 0
        for rows, cell in enumerate(_segment_cells(segment, source, column), 1):  # noqa: B007
            yield cell
        progress.by_segment[segment.source.label] = {"rows": rows}


def _segment_rows(plan: Plan, progress: Progress, segment: SegmentPlan) -> int:
    if len(plan.segments) == 1:
        return progress.rows_read
    return progress.by_segment.get(segment.source.label, {}).get("rows", 0)


def _require_rows(plan: Plan, progress: Progress) -> None:
    """Every segment must hold data rows: an empty segment export is treated as a fault (in
    mirror mode it would otherwise remove its members from the audience)."""
    empty = [s for s in plan.segments if _segment_rows(plan, progress, s) == 0]
    if empty:
        where = ", ".join(s.source.label for s in empty)
        snapshot = empty[0].snapshot.id
        sent = (
            "nothing was sent"
            if progress.uploaded == 0
            else "the other segments' identifiers were added (add mode)"
        )
        raise SourceError(
            f"{where}: snapshot {snapshot} holds no data rows; {sent} "
            "(an empty segment export is treated as a fault)"
        )


def _add(
    plan: Plan, source: BlobSource, attempt: AttemptSpec, progress: Progress, sender: _Sender
) -> None:
    """Send every distinct valid identifier as the snapshot streams by."""
    export = plan.export
    with sender:
        for kind, column in export.columns:
            tally = identifiers.Tally()
            sender.counts = progress.by_type.setdefault(kind.schema, {})
            normalise = identifiers.normaliser(kind, export.default_country_code)
            cells = _cells(plan, source, column, progress)
            scanned = progress.rows_scanned
            tick = functools.partial(sender.reading, tally, scanned)
            batches = identifiers.digest_batches(cells, normalise, attempt.batch_size, tally, tick)
            for batch in batches:
                sender.reading(tally, scanned, publish=False)
                sender.send("POST", kind, batch)
            sender.drain()
            sender.reading(tally, scanned, publish=False)  # this kind's pass, in full
            _count(kind, tally, progress)
    _require_rows(plan, progress)


def _mirror(
    plan: Plan,
    source: BlobSource,
    state: StateStore,
    attempt: AttemptSpec,
    progress: Progress,
    *,
    sender: _Sender,
    check_lease: Callable[[], None],
) -> None:
    """Read everything and work out every kind's changes first, send only then.

    So a snapshot that turns out empty or malformed changes nothing. Before sending, the
    run adds what it is about to send to the kind's ``touched`` set, so that if it fails
    half way the next run knows which identifiers' presence is uncertain.
    """
    export, audience = plan.export, attempt.audience_id
    plans: list[tuple[identifiers.IdentifierType, list[bytes], Diff, list[bytes]]] = []
    for kind, column in export.columns:
        tally = identifiers.Tally()
        progress.by_type.setdefault(kind.schema, {})
        normalise = identifiers.normaliser(kind, export.default_country_code)
        scanned = progress.rows_scanned
        tick = functools.partial(sender.reading, tally, scanned)
        batches = identifiers.digest_batches(
            _cells(plan, source, column, progress), normalise, 1 << 62, tally, tick
        )
        current = [digest for batch in batches for digest in batch]
        sender.reading(tally, scanned, publish=False)  # this kind's pass, in full
        current.sort()
        _count(kind, tally, progress)
        touched = list(state.read(export.name, audience, kind.schema, TOUCHED))
        changes = diff(current, state.read(export.name, audience, kind.schema), touched)
        plans.append((kind, current, changes, touched))
    _require_rows(plan, progress)
    _check_removals(
        export, attempt, progress, [(kind, current, changes) for kind, current, changes, _ in plans]
    )
    with sender:
        for kind, _, changes, touched in plans:
            counts = progress.by_type[kind.schema]
            sender.counts = counts
            counts["unchanged"] = changes.unchanged
            progress.unchanged += changes.unchanged
            if not attempt.dry_run and (changes.added or changes.removed):
                sent = sorted({*touched, *changes.added, *changes.removed})
                state.write(export.name, audience, kind.schema, sent, TOUCHED)
            size = attempt.batch_size
            for start in range(0, len(changes.added), size):
                sender.send("POST", kind, changes.added[start : start + size])
            for start in range(0, len(changes.removed), size):
                sender.send("DELETE", kind, changes.removed[start : start + size])
            sender.drain()
    if attempt.dry_run:
        return
    check_lease()
    for kind, current, _, _ in plans:
        state.write(export.name, audience, kind.schema, current)
        state.delete(export.name, audience, kind.schema, TOUCHED)


def _check_removals(
    export: Export,
    attempt: AttemptSpec,
    progress: Progress,
    plans: list[tuple[identifiers.IdentifierType, list[bytes], Diff]],
) -> None:
    """The removal safeguard, before anything is sent: record its decision, and refuse the
    run when it is over the export's limits and the operator did not allow it."""
    changes = [
        safeguard.KindChange(
            kind.schema, diff.managed, len(diff.removed), len(current), confirmed=diff.confirmed
        )
        for kind, current, diff in plans
    ]
    verdict = safeguard.judge(
        changes,
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


def _count(kind: identifiers.IdentifierType, tally: identifiers.Tally, progress: Progress) -> None:
    counts = progress.by_type[kind.schema]
    counts.update(
        rows=tally.rows,
        empty=tally.empty,
        invalid=tally.invalid,
        prehashed=tally.prehashed,
        duplicates=tally.duplicates,
    )
    progress.rows_read = max(progress.rows_read, tally.rows)  # every kind reads the same rows
    progress.empty += tally.empty
    progress.invalid += tally.invalid
    progress.prehashed += tally.prehashed
    progress.duplicates += tally.duplicates


_PUBLISH_SECONDS = 1.0  # progress while reading, or of a dry run, is saved at most this often


class _Sender:
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

    def send(self, method: str, kind: identifiers.IdentifierType, batch: list[bytes]) -> None:
        index, self._index = self._index, self._index + 1
        attempt, progress = self._attempt, self._progress
        self._fingerprint.update(f"{method} {kind.schema} {len(batch)}\n".encode())
        for start in range(0, len(batch), 4096):  # in pieces: no batch-sized copy
            self._fingerprint.update(b"".join(batch[start : start + 4096]))
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
            self._account(method, len(batch), self.counts, resumed=True)
            progress.checkpoint = mark
            return
        if attempt.dry_run:
            self._account(method, len(batch), self.counts, resumed=False)
            self._publish()
            return
        self._check_lease()
        body = identifiers.UsersBody(kind.schema, batch)
        # On the sender thread, in this thread's context: the request's span is the run's
        # child, and its log records carry the run's IDs.
        future = self._pool.submit(contextvars.copy_context().run, self._send_one, method, body)
        self._pending.append((future, method, len(batch), self.counts, mark))
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
        self._publish(now=True)  # each accepted request: the checkpoint moves on

    def reading(self, tally: identifiers.Tally, scanned: int, *, publish: bool = True) -> None:
        """While a kind's pass reads the snapshot: the rows so far (``scanned``: the rows of
        the passes before this one), published at most every ``_PUBLISH_SECONDS``."""
        progress = self._progress
        progress.rows_read = max(progress.rows_read, tally.rows)
        progress.rows_scanned = scanned + tally.rows
        if publish:
            self._publish()

    def _publish(self, *, now: bool = False) -> None:
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

    def __enter__(self) -> _Sender:
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
