"""One attempt of a run, on the worker that holds its export: every way it can end.

``perform`` marks the run running, exports under a lease (``shared.runs.locking``), and ends the
run: succeeded, failed (with an error for the operator), or, after a transient fault, queued
again to resume on the next delivery. Every record write is conditional; when another writer
got there first, this worker leaves the run to them (see ``shared.runs.records``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from typing import NoReturn

from shared.adapters.jobqueue import Job
from shared.core.definitions import Mode
from shared.core.endings import EndReason
from shared.core.errors import (
    ExportDisabled,
    ExportError,
    LeaseLost,
    RecordChanged,
    RunBusy,
    StorageError,
    Transient,
)
from shared.core.runrecord import Progress, RunRecord, RunStatus, Trigger, now
from shared.export import audiences, pipeline
from shared.export.plan import AttemptSpec, plan_run
from shared.runs import locking, split
from shared.runs.records import finish, reread
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def perform(rt: Runtime, record: RunRecord, owner: str, *, redeliverable: bool) -> RunRecord:
    try:
        started = _start(rt, record)
    except RecordChanged:
        locking.hand_back(rt, record, owner)
        raise RunBusy(f"run {record.run_id}: its record keeps changing; try again") from None
    except StorageError as exc:
        _hand_on(rt, record, owner, exc, "it could not be marked running")
    if started is None:  # ended by another writer since this worker read it
        locking.release(rt, record, owner)
        return reread(rt, record)
    return _attempt(rt, started, owner, redeliverable=redeliverable)


def _attempt(rt: Runtime, record: RunRecord, owner: str, *, redeliverable: bool) -> RunRecord:
    """One attempt at the run, which this worker holds: every way it can end."""
    started = time.monotonic()
    try:
        with locking.Lease(rt, record, owner) as lease:
            handed_on = _export(rt, record, lease, owner, may_split=redeliverable)
    except (LeaseLost, RecordChanged) as exc:
        # Another worker took the export over, or another writer ended the run meanwhile:
        # the record is theirs now, and this worker writes nothing more.
        log.warning("Run %s of export %s stopped: %s", record.run_id, record.export, exc)
        locking.release(rt, record, owner)
        return reread(rt, record)
    except Transient as exc:
        if not redeliverable:
            return _end(rt, record, owner, RunStatus.FAILED, str(exc), started=started,
                        reason=EndReason.of(exc))  # fmt: skip
        if (taken := _interrupted(rt, record, owner, exc)) is not None:
            return taken
        raise
    except ExportError as exc:
        log.error("Run %s of export %s failed: %s", record.run_id, record.export, exc)
        return _end(rt, record, owner, RunStatus.FAILED, str(exc), started=started,
                    reason=EndReason.of(exc))  # fmt: skip
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
        return _end(rt, record, owner, RunStatus.FAILED, message, started=started,
                    reason=EndReason.INTERNAL)  # fmt: skip
    except KeyboardInterrupt:
        stopped = "interrupted (the process was stopped)"
        with contextlib.suppress(StorageError):  # handed on: the interruption is what counts
            _end(rt, record, owner, RunStatus.FAILED, stopped, started=started,
                 reason=EndReason.INTERRUPTED)  # fmt: skip
        raise
    # Split over the queue, the run's jobs end it.
    return record if handed_on else _end(rt, record, owner, RunStatus.SUCCEEDED, "",
                                         started=started)  # fmt: skip


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
        locking.release_queued(rt, record)
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


def _export(
    rt: Runtime, record: RunRecord, lease: locking.Lease, owner: str, *, may_split: bool
) -> bool:
    """One attempt: plan, resolve the audience, run the pipeline, read the audience's status.
    The record's progress is this attempt's from the moment the pipeline starts. With
    ``may_split`` (a queue worker), a large snapshot's run is split into jobs on the queue
    instead (``shared.runs.split``): True then, and the jobs end the run."""
    rt.forget_definitions()  # as stored now: it may have changed, or gone, since the run was queued
    export = rt.definitions.require(record.export)
    if not export.enabled:
        raise ExportDisabled(f"export {export.name!r} was disabled before the run started")
    plan = plan_run(rt.source, export, record.snapshot)
    client = rt.snapchat(rt.definitions.connection(export.connection))
    record.audience_id = audiences.resolve(rt, export, client, dry_run=record.dry_run)
    record.mode = export.mode
    attempt = AttemptSpec.of(record)

    def save_progress(progress: Progress) -> None:
        lease.check()  # only the holder writes the record
        record.progress = progress
        rt.runs.save(record)

    if may_split and split.should_split(rt, plan) and split.start(rt, record, plan, owner):
        return True
    # Everything that can fail before the pipeline starts comes first: until it starts, the
    # record keeps the previous attempt's progress (its checkpoint) as it is.
    state = rt.state() if export.mode is Mode.MIRROR else None
    resume, progress = record.progress, Progress()
    record.progress = progress
    try:
        pipeline.run(
            plan,
            rt.source,
            client,
            attempt,
            resume=resume,
            progress=progress,
            on_progress=save_progress,
            spill=rt.spill(record.run_id),
            memory_budget=rt.settings.spill_memory_bytes,
            check_lease=lease.check,
            state=state,
        )
    finally:
        record.requests += client.counters.requests
        record.retries += client.counters.retries
    audiences.read_status(client, record)
    lease.check()
    return False


def _end(
    rt: Runtime,
    record: RunRecord,
    owner: str,
    status: str,
    error: str,
    *,
    started: float,
    reason: EndReason | None = None,
) -> RunRecord:
    try:
        finished = finish(rt, record, status, error, started, reason=reason)
    except StorageError as exc:
        _hand_on(rt, record, owner, exc, f"its end ({status}) could not be recorded")
    locking.release(rt, record, owner)
    return finished


def _hand_on(rt: Runtime, record: RunRecord, owner: str, exc: StorageError, what: str) -> NoReturn:
    """A write of the run's record failed for good: never leave the run marked active
    with its export freed. Hand the export back to the queued run, so that the next
    delivery of its job takes it at once and resumes it from its last stored checkpoint
    (a run without a job, the command line's, is given one); then raise, so that the queue
    delivers the job again. If even that fails, the worker's lease lapses and the next
    delivery takes the run over then."""
    log.warning("Run %s of export %s: %s (%s); handed back to resume on the next delivery",
                record.run_id, record.export, what, exc)  # fmt: skip
    with contextlib.suppress(StorageError):
        if locking.hand_back(rt, record, owner) and record.trigger == Trigger.CLI:
            rt.jobs.send(Job(run_id=record.run_id, export=record.export,
                             snapshot=record.snapshot))  # fmt: skip
    raise StorageError(f"run {record.run_id}: {what} ({exc}); it resumes from its last "
                       "checkpoint on the next delivery of its job") from None  # fmt: skip
