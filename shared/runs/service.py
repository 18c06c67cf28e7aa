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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from shared.adapters import telemetry
from shared.adapters.jobqueue import AUDIENCE_CHECK, SNAPSHOT_CHECK, Job
from shared.core import audience_health as health
from shared.core.definitions import Export
from shared.core.endings import EndReason
from shared.core.errors import (
    ExportDisabled,
    ExportError,
    RecordChanged,
    RunActive,
    RunBusy,
    SnapshotSettling,
    SourceError,
    StorageError,
)
from shared.core.layout import Snapshot
from shared.core.runrecord import ACTIVE, RunRecord, RunStatus, Trigger, stamp
from shared.export.plan import SEGMENTS_JOINED, SEGMENTS_TAG, choose_snapshot
from shared.runs import attempts, audience_checks, events, locking, orphans, split
from shared.runs.completeness import Completeness
from shared.runs.records import finish, new_record
from shared.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportStatus:
    export: Export
    last_run: RunRecord | None
    audience_health: dict[str, Any] | None = None  # shared.core.audience_health.health


def request_run(
    rt: Runtime,
    name: str,
    trigger: str,
    *,
    dry_run: bool = False,
    allow_large_removal: bool = False,
    snapshot: str | None = None,
    requested_by: str = "",
) -> RunRecord:
    """Queue a run of the export's newest snapshot (or of ``snapshot``), exported before or
    not.

    ``allow_large_removal`` lets this one run past the removal safeguard (mirror mode); with
    ``snapshot`` the operator makes sure it is the snapshot a dry run showed them.
    Raises RunActive when another run of the export is queued or running.
    """
    export = rt.definitions.require(name)
    if not export.enabled:
        raise ExportDisabled(f"export {name!r} is disabled")
    return _enqueue(
        rt,
        export,
        _settled_snapshot(rt, export, snapshot),
        trigger,
        dry_run=dry_run,
        allow_large_removal=allow_large_removal,
        requested_by=requested_by,
    )


def _settled_snapshot(rt: Runtime, export: Export, wanted: str | None = None) -> Snapshot:
    """Each segment's newest complete snapshot, or the ones ``wanted`` names if complete."""
    complete = _completeness(rt, export, datetime.now(UTC))
    return choose_snapshot(rt.source, export, complete, wanted=wanted)


def _completeness(rt: Runtime, export: Export, at: datetime) -> Completeness:
    """Customer Insights writes partitions one by one: a snapshot read half written would
    drop (or, in mirror mode, remove) the profiles of the partitions to come."""
    return Completeness(rt.source, export, at, rt.settings.snapshot_settle_seconds)


def _enqueue(
    rt: Runtime,
    export: Export,
    snapshot: Snapshot,
    trigger: str,
    *,
    dry_run: bool = False,
    allow_large_removal: bool = False,
    requested_by: str = "",
    complete_at: datetime | None = None,
    done_by: Callable[[], str] | None = None,
) -> RunRecord:
    record = new_record(
        rt,
        export,
        snapshot.id,
        trigger,
        dry_run=dry_run,
        allow_large_removal=allow_large_removal,
        requested_by=requested_by,
    )
    if complete_at is not None:  # when the data landed: the run's latency counts from it
        record.snapshot_complete_at = stamp(complete_at)
    locking.claim_queued(rt, record)
    if done_by is not None and (other := done_by()):
        # A run of this snapshot ended while we looked (the timer and an event raced): ours
        # would be its second run.
        locking.release_queued(rt, record)
        raise RunActive(f"export {export.name}: snapshot {snapshot.id} has run {other}", other)
    try:
        rt.runs.save(record)
    except StorageError as exc:
        # Nothing will run this: free the export at once rather than after the claim expires.
        with contextlib.suppress(StorageError):
            locking.release(rt, record)
            finish(rt, record, RunStatus.FAILED, str(exc), reason=EndReason.of(exc))
        raise
    try:
        rt.jobs.send(Job(run_id=record.run_id, export=export.name, snapshot=snapshot.id))
    except StorageError as exc:
        _job_uncertain(rt, record, exc)
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


def _job_uncertain(rt: Runtime, record: RunRecord, exc: StorageError) -> NoReturn:
    """A job put reported failed may still have been stored (a send whose reply was lost,
    then refused retries), so the run is not marked failed: if the queue kept the job, it
    runs. Its hold on the export is cut to one lease, so that if the queue did not, the
    export is free again soon and the next claim or timer tick ends the run as abandoned."""
    log.warning("Run %s of export %s: its job may not have reached the queue (%s)",
                record.run_id, record.export, exc)  # fmt: skip
    lease = rt.settings.run_lease_seconds
    with contextlib.suppress(StorageError):
        locking.hold_queued(rt, record, lease)
    record.error = f"its job may not have reached the queue ({exc})"
    with contextlib.suppress(StorageError, RecordChanged):
        rt.runs.save(record)
    raise StorageError(
        f"run {record.run_id} of export {record.export}: its job may not have reached the "
        f"queue ({exc}); it may still run. If no worker takes it within {lease:.0f} s, it "
        "ends as abandoned and the export can be run again"
    ) from None


def schedule(rt: Runtime, at: datetime | None = None) -> list[RunRecord]:
    """Queue one run per enabled export whose newest snapshot has not been exported yet."""
    at = at or datetime.now(UTC)
    queued: list[RunRecord] = []
    for broken in rt.definitions.broken:
        log.error("Timer skips export %s, whose definition is invalid: %s", broken.name,
                  "; ".join(broken.problems))  # fmt: skip
    telemetry.timer_ticked()  # the heartbeat the timer-silent alert watches
    enabled = [export for export in rt.definitions.exports if export.enabled]
    for export in enabled:
        try:
            record = check_export(rt, export, at, Trigger.TIMER)
        except SnapshotSettling as exc:
            log.info("Export %s: %s", export.name, exc)
            continue
        except RunActive as exc:
            log.info("Timer: export %s has active run %s", export.name, exc.active_run_id)
            continue
        except ExportError as exc:  # one export's trouble must not stop the others
            log.error("Timer could not check export %s: %s", export.name, exc)
            telemetry.timer_check_failed(export.name)
            continue
        if record is not None:
            queued.append(record)
    log.info("Timer queued %d run(s) for %d enabled export(s)", len(queued), len(enabled))
    audience_checks.on_timer(rt, enabled, at)
    orphans.remove_orphans_quietly(rt, at)
    return queued


def check_export(rt: Runtime, export: Export, at: datetime, trigger: str) -> RunRecord | None:
    """The one decision of the timer and the event path: queue a run of the export's newest
    snapshot if it is complete and no run of it is active, done or given up on.

    Raises SnapshotSettling while the newest snapshot is not complete, and RunActive when a
    run of another snapshot holds the export.
    """
    complete = _completeness(rt, export, at)
    try:  # each segment's newest snapshot, once all of them are complete
        newest = choose_snapshot(rt.source, export, complete, newest_only=True)
    except SnapshotSettling:
        raise
    except SourceError as exc:  # a segment has no snapshot yet
        log.info("Export %s: nothing to export yet (%s)", export.name, exc)
        return None
    since = rt.definition_store.recreated_at("export", export.name) or ""

    def of_this_export() -> list[RunRecord]:  # not those of a deleted one of the same name
        found = rt.runs.for_snapshot(export.name, newest.id)
        return [r for r in found if not r.dry_run and r.queued_at >= since]

    runs = of_this_export()
    if any(r.status in ACTIVE for r in runs):
        locking.end_orphans(rt, export.name, runs)
        runs = of_this_export()
    # Waiting since the snapshot settled, or since the export was created if that is later.
    settled_at = newest.last_modified + timedelta(seconds=rt.settings.snapshot_settle_seconds)
    if since:
        settled_at = max(settled_at, datetime.fromisoformat(since.replace("Z", "+00:00")))
    exported = any(r.status == RunStatus.SUCCEEDED for r in runs)
    waited = 0.0 if exported else (at - settled_at).total_seconds() / 3600
    telemetry.snapshot_waiting(export.name, waited)  # the stale-audience alert watches it
    if any(r.status in (*ACTIVE, RunStatus.SUCCEEDED) for r in runs):
        return None
    if any(r.status == RunStatus.FAILED and r.safeguard.get("decision") == "blocked" for r in runs):
        # The same snapshot would be refused again: the operator decides (allow_large_removal).
        log.warning("Export %s: snapshot %s was stopped by the removal safeguard; waiting for "
                    "an operator or a new snapshot", export.name, newest.id)  # fmt: skip
        return None
    failures = sum(r.status == RunStatus.FAILED for r in runs)
    if failures >= rt.settings.timer_max_attempts:
        log.warning(
            "Export %s: snapshot %s failed %d times; waiting for a new snapshot",
            export.name,
            newest.id,
            failures,
        )
        return None
    landed = [complete.complete_at.get(s, newest.last_modified) for s in _segment_ids(newest)]

    def done_by() -> str:
        return next((r.run_id for r in of_this_export() if r.status != RunStatus.FAILED), "")

    return _enqueue(rt, export, newest, trigger, complete_at=max(landed), done_by=done_by)


def _segment_ids(snapshot: Snapshot) -> list[str]:
    ids, _, _ = snapshot.id.rpartition(SEGMENTS_TAG)
    return ids.split(SEGMENTS_JOINED) if ids else [snapshot.id]


def process(rt: Runtime, job: Job) -> RunRecord | None:
    """Perform one queued run, resuming it if an earlier delivery was interrupted.

    Fatal failures end in a ``failed`` record. Transient ones leave the run
    queued with its checkpoint and are raised again, so that the queue delivers the job
    once more; after the queue's last delivery ``give_up`` ends it.
    """
    if job.step:  # a later check of the audience, or a job of a run split over instances
        return _step(rt, job)
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
    if split.is_split(rt, record):  # split already: make sure its read jobs are queued
        split.resume(rt, record)
        return record
    owner = secrets.token_hex(8)
    try:
        locking.claim(rt, record, owner, rt.settings.run_lease_seconds)
    except RunActive as exc:
        if exc.active_run_id == record.run_id:
            raise RunBusy(f"run {record.run_id} is being exported by another worker") from None
        return finish(rt, record, RunStatus.FAILED, f"superseded by run {exc.active_run_id}",
                      reason=EndReason.SUPERSEDED)  # fmt: skip
    with telemetry.run_context(record):
        return attempts.perform(rt, record, owner, redeliverable=True)


def _step(rt: Runtime, job: Job) -> RunRecord | None:
    if job.step == AUDIENCE_CHECK:  # a later look at what Snapchat made of a run
        return audience_checks.perform(rt, job)
    if job.step == SNAPSHOT_CHECK:  # an export's new snapshot, after an event
        return events.perform_check(rt, job, check_export)
    return split.perform(rt, job)


def give_up(rt: Runtime, job: Job) -> RunRecord | None:
    """The queue gave up on a job (poison queue): end its run as failed, saying why."""
    if job.step == AUDIENCE_CHECK:  # the run's status never changes; the timer checks later
        log.warning("Run %s: the queue gave up on an audience check", job.run_id)
        return rt.runs.get(job.export, job.run_id)
    if job.step == SNAPSHOT_CHECK:  # no run yet: the timer checks the export later
        log.warning("Export %s: the queue gave up on a snapshot check", job.export)
        return None
    if job.step:
        return split.give_up(rt, job)
    record = rt.runs.get(job.export, job.run_id)
    if record is None or not record.active:
        return record
    if locking.worker_holds(rt, record):
        # A worker is still on it. If it finishes, fine; if it dies, its lease lapses and
        # the timer ends the run as abandoned (see locking.end_orphans).
        log.warning("Run %s: the queue gave up on a job a worker still holds", record.run_id)
        return record
    reason = record.error or "the worker failed without recording an error"
    ended = finish(
        rt,
        record,
        RunStatus.FAILED,
        f"gave up after {record.attempts} attempt(s): {reason}",
        reason=EndReason.GAVE_UP,  # the job reached the poison queue
    )
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
    export = rt.definitions.require(name)
    if not export.enabled:  # a disabled export's data transfer may not be acknowledged
        raise ExportDisabled(f"export {name!r} is disabled; set enabled to true to run it")
    problem: SourceError | None = None
    try:
        chosen = _settled_snapshot(rt, export, snapshot).id
    except SourceError as exc:
        chosen, problem = "", exc
    record = new_record(
        rt, export, chosen, Trigger.CLI, dry_run=dry_run, allow_large_removal=allow_large_removal
    )
    owner = secrets.token_hex(8)
    locking.claim(rt, record, owner, rt.settings.run_lease_seconds)
    rt.runs.save(record)
    if problem is not None:
        locking.release(rt, record)
        return finish(rt, record, RunStatus.FAILED, str(problem), reason=EndReason.of(problem))
    with telemetry.run_context(record):
        return attempts.perform(rt, record, owner, redeliverable=False)


def exports_overview(rt: Runtime) -> list[ExportStatus]:
    return [export_status(rt, export) for export in rt.definitions.exports]


def export_status(rt: Runtime, export: Export) -> ExportStatus:
    """The export's last run and its audience's health (not a deleted namesake's runs)."""
    since = rt.definition_store.recreated_at("export", export.name) or ""
    runs = rt.runs.recent(export.name, limit=health.TREND_LENGTH)
    runs = [r for r in runs if r.queued_at >= since]
    found = audience_checks.overview(export, runs, datetime.now(UTC))
    return ExportStatus(export, runs[0] if runs else None, found)
