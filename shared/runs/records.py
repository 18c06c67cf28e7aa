"""Writing a run's record: creating it, ending it, reading it again.

Every write is conditional (``RunLog.save``): the first writer wins, and the one that loses
re-reads the record and never writes over it. So a run that ended stays as it ended, and a
run whose worker wrote progress after an orphan check or the poison handler read it is not
ended on stale grounds (the next check decides again from fresh data).
"""

from __future__ import annotations

import getpass
import logging
import time

from shared.adapters import telemetry
from shared.core.definitions import Export
from shared.core.endings import EndReason
from shared.core.errors import RecordChanged
from shared.core.runrecord import RunRecord, Trigger, new_run_id, now
from shared.runs import audience_checks
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def new_record(
    rt: Runtime,
    export: Export,
    snapshot: str,
    trigger: str,
    *,
    dry_run: bool,
    allow_large_removal: bool,
    requested_by: str = "",
) -> RunRecord:
    """A new run's record. ``requested_by`` says who asked (object ID and name); the timer's
    runs say ``timer``, the command line's ``cli (<the OS user>)``."""
    if not requested_by:
        requested_by = f"cli ({getpass.getuser()})" if trigger == Trigger.CLI else str(trigger)
    return RunRecord(
        requested_by=requested_by,
        run_id=new_run_id(),
        export=export.name,
        trigger=trigger,
        snapshot=snapshot,
        queued_at=now(),
        batch_size=rt.settings.upload_batch_size,
        mode=export.mode,
        dry_run=dry_run,
        allow_large_removal=allow_large_removal,
        allowed_by=trigger if allow_large_removal else "",
    )


def reread(rt: Runtime, record: RunRecord) -> RunRecord:
    """The record as stored now (or this copy, if it has gone)."""
    return rt.runs.get(record.export, record.run_id) or record


def finish(
    rt: Runtime,
    record: RunRecord,
    status: str,
    error: str,
    started: float | None = None,
    *,
    reason: EndReason | None = None,
) -> RunRecord:
    """End the run as ``status``, unless another writer changed its record since it was read.

    The first writer wins (see the module's docstring): the one that loses the race returns
    the record as the other writer left it, and never overwrites it.

    Returns ``record`` itself when its write landed, else the record as stored now. A run
    whose end landed is counted in telemetry once; ``reason`` says why it failed (stored as
    the record's ``error_kind``; ``EndReason.of(exc)`` for an error that ended it).
    """
    ended_by = reason if error else None
    record.status, record.error, record.finished_at = status, error, now()
    record.error_kind = str(ended_by or "")
    try:
        rt.runs.save(record)
    except RecordChanged:
        fresh = reread(rt, record)
        log.warning(
            "Run %s of export %s: not marked %s, since another writer changed its record "
            "meanwhile (it is %s)",
            record.run_id,
            record.export,
            status,
            fresh.status,
        )
        return fresh
    telemetry.run_ended(record, ended_by)
    audience_checks.queue_first(rt, record)  # a run that succeeded: what Snapchat made of it
    took = time.monotonic() - started if started is not None else 0.0
    log.info(
        "Run %s of export %s %s in %.1fs: rows=%d empty=%d invalid=%d prehashed=%d "
        "duplicates=%d uploaded=%d resumed=%d batches=%d requests=%d retries=%d attempts=%d",
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
        record.resumed,
        record.batches,
        record.requests,
        record.retries,
        record.attempts,
    )
    return record
