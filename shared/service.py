"""What the app does, as plain functions of a Runtime: the triggers and the CLI call these.

- ``request_run``: record a queued run for an export's newest snapshot and enqueue its job;
- ``schedule``: the timer's pass over every enabled export;
- ``process``: the queue worker's export of one job (resuming an interrupted run);
- ``give_up``: the poison-queue handler's end of a job that kept failing;
- ``run_now``: the command line's inline run (no queue).

At most one run per export is active: a run claims the export's lock when it is queued and
holds it, renewed by a heartbeat while a worker is on it, until it ends.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime

from shared import audiences, locking, pipeline
from shared.adapters.export_locks import QUEUED
from shared.adapters.jobqueue import Job
from shared.core.definitions import Export
from shared.core.errors import (
    RETRY_LATER,
    ExportDisabled,
    ExportError,
    InvalidExport,
    LeaseLost,
    NotFound,
    RecordChanged,
    RunActive,
    RunBusy,
    SourceError,
    StorageError,
)
from shared.core.layout import Snapshot
from shared.core.runrecord import ACTIVE, Progress, RunRecord, RunStatus, now
from shared.run_records import finish, new_record, reread
from shared.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportStatus:
    export: Export
    last_run: RunRecord | None


def export_or_raise(rt: Runtime, name: str) -> Export:
    export = rt.definitions.export(name)
    if export is None:
        broken = rt.definitions.broken_export(name)
        if broken is not None:
            raise InvalidExport(list(broken.problems))
        raise NotFound(f"no export named {name!r}")
    return export


def request_run(
    rt: Runtime,
    name: str,
    trigger: str,
    *,
    dry_run: bool = False,
    allow_large_removal: bool = False,
    snapshot: str | None = None,
) -> RunRecord:
    """Queue a run of the export's newest snapshot (or of ``snapshot``), exported before or
    not.

    ``allow_large_removal`` lets this one run past the removal safeguard (mirror mode); with
    ``snapshot`` the operator makes sure it is the snapshot a dry run showed them.
    Raises RunActive when another run of the export is queued or running.
    """
    export = export_or_raise(rt, name)
    if not export.enabled:
        raise ExportDisabled(f"export {name!r} is disabled")
    return _enqueue(
        rt,
        export,
        _settled_snapshot(rt, export, snapshot),
        trigger,
        dry_run=dry_run,
        allow_large_removal=allow_large_removal,
    )


def _settled_snapshot(rt: Runtime, export: Export, wanted: str | None = None) -> Snapshot:
    """The newest complete snapshot, or the one named ``wanted`` if it is complete."""
    found = pipeline.find_snapshots(rt.source, export)
    if not found:
        raise SourceError(
            f"{export.container}/{export.path}: no snapshot found (no "
            f"yyyy/MM/dd/HHmm/{export.table_name}_<n>.csv or {export.table_name}_<epoch>.csv files)"
        )
    if wanted is not None:
        found = [s for s in found if s.id == wanted]
        if not found:
            raise SourceError(f"{export.container}/{export.path}: no snapshot {wanted!r}")
    settled = [s for s in found if _settled(rt, s, datetime.now(UTC))]
    if not settled:
        raise SourceError(
            f"{export.container}/{export.path}: snapshot {found[-1].id} is still being written "
            f"(files younger than {rt.settings.snapshot_settle_seconds:g} s); try again shortly"
        )
    return settled[-1]


def _settled(rt: Runtime, snapshot: Snapshot, at: datetime) -> bool:
    """Customer Insights writes partitions one by one: a snapshot whose newest file is very
    recent may still be growing, and reading it half written would drop (or, in mirror
    mode, remove) the profiles of the partitions to come."""
    age = (at - snapshot.last_modified).total_seconds()
    return age >= rt.settings.snapshot_settle_seconds


def _enqueue(
    rt: Runtime,
    export: Export,
    snapshot: Snapshot,
    trigger: str,
    *,
    dry_run: bool = False,
    allow_large_removal: bool = False,
) -> RunRecord:
    record = new_record(
        rt, export, snapshot.id, trigger, dry_run=dry_run, allow_large_removal=allow_large_removal
    )
    locking.claim(rt, record, QUEUED, locking.QUEUE_CLAIM_SECONDS)
    try:
        rt.runs.save(record)
        rt.jobs.send(Job(run_id=record.run_id, export=export.name, snapshot=snapshot.id))
    except StorageError as exc:
        # Nothing will run this: free the export at once rather than after the claim expires.
        locking.release(rt, record)
        with contextlib.suppress(StorageError):
            finish(rt, record, "failed", str(exc))
        raise
    if allow_large_removal:
        log.warning(
            "Run %s of export %s may remove more than the safeguard allows (asked by %s)",
            record.run_id,
            export.name,
            trigger,
        )
    log.info(
        "Queued run %s of export %s (snapshot %s, %s)",
        record.run_id,
        export.name,
        snapshot.id,
        trigger,
    )
    return record


def schedule(rt: Runtime, at: datetime | None = None) -> list[RunRecord]:
    """Queue one run per enabled export whose newest snapshot has not been exported yet."""
    at = at or datetime.now(UTC)
    queued: list[RunRecord] = []
    for broken in rt.definitions.broken:
        log.error("Timer skips export %s, whose definition is invalid: %s", broken.name,
                  "; ".join(broken.problems))  # fmt: skip
    enabled = [export for export in rt.definitions.exports if export.enabled]
    for export in enabled:
        try:
            record = _schedule_one(rt, export, at)
        except RunActive as exc:
            log.info("Timer: export %s has active run %s", export.name, exc.active_run_id)
            continue
        except ExportError as exc:  # one export's trouble must not stop the others
            log.error("Timer could not check export %s: %s", export.name, exc)
            continue
        if record is not None:
            queued.append(record)
    log.info("Timer queued %d run(s) for %d enabled export(s)", len(queued), len(enabled))
    return queued


def _schedule_one(rt: Runtime, export: Export, at: datetime) -> RunRecord | None:
    found = pipeline.find_snapshots(rt.source, export)
    if not found:
        return None
    newest = found[-1]
    if not _settled(rt, newest, at):
        log.info("Export %s: snapshot %s is still settling", export.name, newest.id)
        return None
    runs = [r for r in rt.runs.for_snapshot(export.name, newest.id) if not r.dry_run]
    if any(r.status in ACTIVE for r in runs):
        locking.end_orphans(rt, export.name, runs)
        runs = [r for r in rt.runs.for_snapshot(export.name, newest.id) if not r.dry_run]
    if any(r.status in (*ACTIVE, "succeeded") for r in runs):
        return None
    failures = sum(r.status == "failed" for r in runs)
    if failures >= rt.settings.timer_max_attempts:
        log.warning(
            "Export %s: snapshot %s failed %d times; waiting for a new snapshot",
            export.name,
            newest.id,
            failures,
        )
        return None
    return _enqueue(rt, export, newest, "timer")


def process(rt: Runtime, job: Job) -> RunRecord | None:
    """Perform one queued run, resuming it if an earlier delivery was interrupted.

    Fatal failures end in a ``failed`` record. Transient ones (RETRY_LATER) leave the run
    queued with its checkpoint and are raised again, so that the queue delivers the job
    once more; after the queue's last delivery ``give_up`` ends it.
    """
    record = rt.runs.get(job.export, job.run_id)
    if record is None:
        log.warning(
            "Job for run %s of export %s has no run record; dropped", job.run_id, job.export
        )
        return None
    if record.status not in ACTIVE:
        log.info("Run %s is already %s; duplicate delivery ignored", record.run_id, record.status)
        locking.release(rt, record)  # in case a worker ended it without freeing the export
        return record
    owner = secrets.token_hex(8)
    try:
        locking.claim(rt, record, owner, rt.settings.run_lease_seconds)
    except RunActive as exc:
        if exc.active_run_id == record.run_id:
            raise RunBusy(f"run {record.run_id} is being exported by another worker") from None
        return finish(rt, record, "failed", f"superseded by run {exc.active_run_id}")
    return _perform(rt, record, owner, redeliverable=True)


def give_up(rt: Runtime, job: Job) -> RunRecord | None:
    """The queue gave up on a job (poison queue): end its run as failed, saying why."""
    record = rt.runs.get(job.export, job.run_id)
    if record is None or not record.active:
        return record
    if locking.worker_holds(rt, record):
        # A worker is still on it. If it finishes, fine; if it dies, its lease lapses and
        # the timer ends the run as abandoned (see locking.end_orphans).
        log.warning("Run %s: the queue gave up on a job a worker still holds", record.run_id)
        return record
    reason = record.error or "the worker failed without recording an error"
    ended = finish(rt, record, "failed", f"gave up after {record.attempts} attempt(s): {reason}")
    if ended is record:  # our end landed; otherwise whoever wrote meanwhile owns the run
        locking.release(rt, record)
    return ended


def run_now(
    rt: Runtime,
    name: str,
    *,
    dry_run: bool = False,
    allow_large_removal: bool = False,
    snapshot: str | None = None,
) -> RunRecord:
    """Export the newest snapshot in this process, recorded as a ``cli`` run."""
    export = export_or_raise(rt, name)
    if not export.enabled:  # a disabled export's data transfer may not be acknowledged
        raise ExportDisabled(f"export {name!r} is disabled; set enabled to true to run it")
    try:
        chosen, problem = _settled_snapshot(rt, export, snapshot).id, ""
    except SourceError as exc:
        chosen, problem = "", str(exc)
    record = new_record(
        rt, export, chosen, "cli", dry_run=dry_run, allow_large_removal=allow_large_removal
    )
    owner = secrets.token_hex(8)
    locking.claim(rt, record, owner, rt.settings.run_lease_seconds)
    rt.runs.save(record)
    if problem:
        locking.release(rt, record)
        return finish(rt, record, "failed", problem)
    return _perform(rt, record, owner, redeliverable=False)


def _perform(rt: Runtime, record: RunRecord, owner: str, *, redeliverable: bool) -> RunRecord:
    started = _start(rt, record)
    if started is None:  # ended by another writer since this worker read it
        locking.release(rt, record, owner)
        return reread(rt, record)
    return _attempt(rt, started, owner, redeliverable=redeliverable)


def _attempt(rt: Runtime, record: RunRecord, owner: str, *, redeliverable: bool) -> RunRecord:
    """One attempt at the run, which this worker holds: every way it can end."""
    started = time.monotonic()
    try:
        with locking.Lease(rt, record, owner) as lease:
            _export(rt, record, lease)
    except (LeaseLost, RecordChanged) as exc:
        # Another worker took the export over, or another writer ended the run meanwhile:
        # the record is theirs now, and this worker writes nothing more.
        log.warning("Run %s of export %s stopped: %s", record.run_id, record.export, exc)
        locking.release(rt, record, owner)
        return reread(rt, record)
    except RETRY_LATER as exc:
        if not redeliverable:
            return _end(rt, record, owner, "failed", str(exc), started=started)
        if (taken := _interrupted(rt, record, owner, exc)) is not None:
            return taken
        raise
    except ExportError as exc:
        log.error("Run %s of export %s failed: %s", record.run_id, record.export, exc)
        return _end(rt, record, owner, "failed", str(exc), started=started)
    except Exception as exc:  # noqa: BLE001 - any failure must end in a failed record
        # Unexpected: keep the stack for the operator, but not the message, which could
        # quote data from the export.
        frames = "".join(traceback.format_tb(exc.__traceback__)[-3:])
        log.error(
            "Run %s of export %s failed unexpectedly: %s\n%s",
            record.run_id,
            record.export,
            type(exc).__name__,
            frames,
        )
        message = f"internal error ({type(exc).__name__}); see the function log"
        return _end(rt, record, owner, "failed", message, started=started)
    except KeyboardInterrupt:
        stopped = "interrupted (the process was stopped)"
        _end(rt, record, owner, "failed", stopped, started=started)
        raise
    return _end(rt, record, owner, "succeeded", "", started=started)


def _interrupted(rt: Runtime, record: RunRecord, owner: str, exc: ExportError) -> RunRecord | None:
    """A transient failure: queue the run again, to resume on the next delivery (None: the
    caller raises, so that the queue delivers it). If another writer has it now, leave it to
    them and return their record."""
    log.warning(
        "Run %s of export %s interrupted (%s); it resumes from batch %d on the next delivery",
        record.run_id,
        record.export,
        exc,
        record.batches + 1,
    )
    # Hand the export back to the queued run first: that only works while this worker
    # still holds it, so a worker whose lease lapsed never writes over its successor.
    if not locking.hand_back(rt, record, owner):
        log.warning("Run %s: another worker holds the export now; left to it", record.run_id)
        return reread(rt, record)
    record.status = RunStatus.QUEUED
    record.error = f"attempt {record.attempts} interrupted: {exc}"
    try:
        rt.runs.save(record)
    except RecordChanged:
        log.warning("Run %s: ended by another writer meanwhile; left as it is", record.run_id)
        locking.release(rt, record, QUEUED)
        return reread(rt, record)
    return None


def _start(rt: Runtime, record: RunRecord) -> RunRecord | None:
    """Mark the run as running; None when another writer has ended it meanwhile. A conflict
    with a write that left it active (progress of a worker whose lease lapsed: this worker
    holds the export now) is decided again on a fresh copy."""
    for _ in range(3):
        record.status, record.started_at, record.error = RunStatus.RUNNING, now(), ""
        record.attempts += 1
        record.batch_size = record.batch_size or rt.settings.upload_batch_size
        try:
            rt.runs.save(record)
            return record
        except RecordChanged:
            fresh = rt.runs.get(record.export, record.run_id)
            if fresh is None or not fresh.active:
                return None
            record = fresh
    raise RecordChanged(f"run {record.run_id}: its record keeps changing; try again later")


def _export(rt: Runtime, record: RunRecord, lease: locking.Lease) -> None:
    """One attempt: plan, resolve the audience, run the pipeline, read the audience's status.
    The record's progress is this attempt's from the moment the pipeline starts."""
    export = export_or_raise(rt, record.export)
    if not export.enabled:
        raise ExportDisabled(f"export {export.name!r} was disabled before the run started")
    plan = pipeline.plan(rt.source, export, record.snapshot)
    client = rt.snapchat(rt.definitions.connection(export.connection))
    record.audience_id = audiences.resolve(rt, export, client, dry_run=record.dry_run)
    record.mode = export.mode
    attempt = pipeline.Attempt(
        run_id=record.run_id,
        audience_id=record.audience_id,
        batch_size=record.batch_size,
        dry_run=record.dry_run,
        allow_large_removal=record.allow_large_removal,
    )

    def save_progress(progress: Progress) -> None:
        lease.check()  # only the holder writes the record
        rt.runs.save(record)

    resume, record.progress = record.progress, Progress()
    try:
        pipeline.run(
            plan,
            rt.source,
            client,
            attempt,
            resume=resume,
            progress=record.progress,
            on_progress=save_progress,
            check_lease=lease.check,
            state=rt.state() if export.mode == "mirror" else None,
        )
    finally:
        record.requests += client.counters.requests
        record.retries += client.counters.retries
    audiences.read_status(client, record)
    lease.check()


def _end(
    rt: Runtime, record: RunRecord, owner: str, status: str, error: str, *, started: float
) -> RunRecord:
    finished = finish(rt, record, status, error, started)
    locking.release(rt, record, owner)
    return finished


def exports_overview(rt: Runtime) -> list[ExportStatus]:
    overview = []
    for export in rt.definitions.exports:
        recent = rt.runs.recent(export.name, limit=1)
        overview.append(ExportStatus(export, recent[0] if recent else None))
    return overview
