"""What the app does, as plain functions of a Runtime: the triggers and the CLI call these.

- ``request_run``: record a queued run for an export's newest snapshot and enqueue its job;
- ``schedule``: the timer's pass over every enabled export;
- ``process``: the queue worker's export of one job;
- ``run_now``: the command line's inline run (no queue).
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime

from shared import pipeline
from shared.definitions import Export
from shared.errors import ExportDisabled, ExportError, NotFound, SourceError, StorageError
from shared.jobqueue import Job
from shared.layout import Snapshot
from shared.runlog import RunRecord, new_run_id, now
from shared.runtime import Runtime

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class ExportStatus:
    export: Export
    last_run: RunRecord | None


def export_or_raise(rt: Runtime, name: str) -> Export:
    export = rt.definitions.export(name)
    if export is None:
        raise NotFound(f"no export named {name!r}")
    return export


def request_run(rt: Runtime, name: str, trigger: str) -> RunRecord:
    """Queue a run of the export's newest snapshot, exported before or not."""
    export = export_or_raise(rt, name)
    if not export.enabled:
        raise ExportDisabled(f"export {name!r} is disabled")
    found = pipeline.find_snapshots(rt.source, export)
    if not found:
        raise SourceError(
            f"{export.container}/{export.path}: no snapshot found (no "
            f"yyyy/MM/dd/HHmm/{export.table_name}_<n>.csv or {export.table_name}_<epoch>.csv files)"
        )
    return _enqueue(rt, export, found[-1], trigger)


def _enqueue(rt: Runtime, export: Export, snapshot: Snapshot, trigger: str) -> RunRecord:
    record = RunRecord(
        run_id=new_run_id(),
        export=export.name,
        trigger=trigger,
        snapshot=snapshot.id,
        queued_at=now(),
    )
    rt.runs.save(record)
    try:
        rt.jobs.send(Job(run_id=record.run_id, export=export.name, snapshot=snapshot.id))
    except StorageError as exc:
        _finish(rt, record, "failed", str(exc))
        raise
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
    for export in rt.definitions.exports:
        if not export.enabled:
            continue
        try:
            record = _schedule_one(rt, export, at)
        except ExportError as exc:  # one export's trouble must not stop the others
            log.error("Timer could not check export %s: %s", export.name, exc)
            continue
        if record is not None:
            queued.append(record)
    log.info(
        "Timer queued %d run(s) for %d enabled export(s)",
        len(queued),
        sum(e.enabled for e in rt.definitions.exports),
    )
    return queued


def _schedule_one(rt: Runtime, export: Export, at: datetime) -> RunRecord | None:
    found = pipeline.find_snapshots(rt.source, export)
    if not found:
        return None
    newest = found[-1]
    if (at - newest.last_modified).total_seconds() < rt.settings.snapshot_settle_seconds:
        log.info("Export %s: snapshot %s is still settling", export.name, newest.id)
        return None
    runs = rt.runs.for_snapshot(export.name, newest.id)
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
    """Perform one queued run. Failures end in a ``failed`` record, not an exception."""
    record = rt.runs.get(job.export, job.run_id)
    if record is None:
        log.warning(
            "Job for run %s of export %s has no run record; dropped", job.run_id, job.export
        )
        return None
    if record.status not in ACTIVE:
        log.info("Run %s is already %s; duplicate delivery ignored", record.run_id, record.status)
        return record
    return _perform(rt, record)


def run_now(rt: Runtime, name: str) -> RunRecord:
    """Export the newest snapshot in this process, recorded as a ``cli`` run."""
    export = export_or_raise(rt, name)
    found = pipeline.find_snapshots(rt.source, export)
    record = RunRecord(
        run_id=new_run_id(),
        export=name,
        trigger="cli",
        snapshot=found[-1].id if found else "",
        queued_at=now(),
    )
    rt.runs.save(record)
    if not found:
        return _finish(rt, record, "failed", f"{export.container}/{export.path}: no snapshot found")
    return _perform(rt, record)


def _perform(rt: Runtime, record: RunRecord) -> RunRecord:
    started = time.monotonic()
    record.status, record.started_at = "running", now()
    rt.runs.save(record)
    try:
        export = export_or_raise(rt, record.export)
        if not export.enabled:
            raise ExportDisabled(f"export {export.name!r} was disabled before the run started")
        plan = pipeline.plan(rt.source, export, record.snapshot)
        client = rt.snapchat(rt.definitions.connection(export.connection))
        pipeline.run(
            plan,
            rt.source,
            client,
            batch_size=rt.settings.upload_batch_size,
            record=record,
            on_progress=rt.runs.save,
        )
    except ExportError as exc:
        log.error("Run %s of export %s failed: %s", record.run_id, record.export, exc)
        return _finish(rt, record, "failed", str(exc), started)
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
        return _finish(
            rt,
            record,
            "failed",
            f"internal error ({type(exc).__name__}); see the function log",
            started,
        )
    return _finish(rt, record, "succeeded", "", started)


def _finish(
    rt: Runtime, record: RunRecord, status: str, error: str, started: float | None = None
) -> RunRecord:
    record.status, record.error, record.finished_at = status, error, now()
    rt.runs.save(record)
    took = time.monotonic() - started if started is not None else 0.0
    log.info(
        "Run %s of export %s %s in %.1fs: rows=%d empty=%d invalid=%d prehashed=%d "
        "duplicates=%d uploaded=%d batches=%d requests=%d retries=%d",
        record.run_id,
        record.export,
        status,
        took,
        record.rows_read,
        record.empty,
        record.invalid,
        record.prehashed,
        record.duplicates,
        record.uploaded,
        record.batches,
        record.requests,
        record.retries,
    )
    return record


def exports_overview(rt: Runtime) -> list[ExportStatus]:
    overview = []
    for export in rt.definitions.exports:
        recent = rt.runs.recent(export.name, limit=1)
        overview.append(ExportStatus(export, recent[0] if recent else None))
    return overview
