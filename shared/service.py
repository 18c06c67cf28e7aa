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
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime

from shared import pipeline
from shared.definitions import Export
from shared.errors import (
    RETRY_LATER,
    ExportDisabled,
    ExportError,
    InvalidExport,
    LeaseLost,
    LeaseUncertain,
    NotFound,
    RecordChanged,
    RunActive,
    RunBusy,
    SnapchatError,
    SourceError,
    StorageError,
)
from shared.jobqueue import Job
from shared.layout import Snapshot
from shared.runlog import (
    ACTIVE,
    QUEUED,
    CreatedAudiences,
    ExportLocks,
    Holder,
    RunRecord,
    new_run_id,
    now,
)
from shared.runtime import Runtime
from shared.snapchat import SnapchatClient

log = logging.getLogger(__name__)

QUEUE_CLAIM_SECONDS = 3600.0  # how long a queued run holds its export before a worker takes it


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
) -> RunRecord:
    """Queue a run of the export's newest snapshot, exported before or not.

    ``allow_large_removal`` lets this one run past the removal safeguard (mirror mode).
    Raises RunActive when another run of the export is queued or running.
    """
    export = export_or_raise(rt, name)
    if not export.enabled:
        raise ExportDisabled(f"export {name!r} is disabled")
    return _enqueue(
        rt,
        export,
        _newest_settled(rt, export),
        trigger,
        dry_run=dry_run,
        allow_large_removal=allow_large_removal,
    )


def _newest_settled(rt: Runtime, export: Export) -> Snapshot:
    found = pipeline.find_snapshots(rt.source, export)
    if not found:
        raise SourceError(
            f"{export.container}/{export.path}: no snapshot found (no "
            f"yyyy/MM/dd/HHmm/{export.table_name}_<n>.csv or {export.table_name}_<epoch>.csv files)"
        )
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
    record = _new_record(
        rt, export, snapshot.id, trigger, dry_run=dry_run, allow_large_removal=allow_large_removal
    )
    _claim(rt, record, QUEUED, QUEUE_CLAIM_SECONDS)
    try:
        rt.runs.save(record)
        rt.jobs.send(Job(run_id=record.run_id, export=export.name, snapshot=snapshot.id))
    except StorageError as exc:
        # Nothing will run this: free the export at once rather than after the claim expires.
        ExportLocks(rt.runs).release(export.name, record.run_id)
        with contextlib.suppress(StorageError):
            _finish(rt, record, "failed", str(exc))
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


def _new_record(
    rt: Runtime,
    export: Export,
    snapshot: str,
    trigger: str,
    *,
    dry_run: bool,
    allow_large_removal: bool,
) -> RunRecord:
    return RunRecord(
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


def _claim(rt: Runtime, record: RunRecord, owner: str, ttl: float) -> None:
    """Take the export's lock for the run, or raise RunActive naming the run that has it."""
    claim = ExportLocks(rt.runs).acquire(record.export, record.run_id, owner, ttl)
    if claim.displaced is not None:
        _abandon(rt, record.export, claim.displaced, record.run_id)
    if not claim.acquired:
        holder = claim.holder.run_id if claim.holder else ""
        waiting = claim.holder is not None and claim.holder.owner == QUEUED
        state = (
            "queued, waiting for a worker (without the Functions host, "
            "python -m shared work --once processes the queue)"
            if waiting
            else "running"
        )
        raise RunActive(f"export {record.export!r} has an active run {holder}: {state}", holder)


def _abandon(rt: Runtime, export: str, holder: Holder, successor: str) -> None:
    """A run whose worker stopped renewing its lock: record that it ended, and why."""
    stale = rt.runs.get(export, holder.run_id)
    if stale is not None and stale.status in ACTIVE:
        _finish(
            rt,
            stale,
            "failed",
            f"abandoned: no worker renewed its hold on the export in time; run {successor} "
            f"took over ({stale.error or 'no error was recorded'})",
        )


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


def _end_orphans(rt: Runtime, export: str, runs: list[RunRecord]) -> None:
    """Runs still queued or running whose hold on the export has lapsed (a killed command
    line run, a job the queue lost) end as failed, so that their snapshot can run again."""
    locks = ExportLocks(rt.runs)
    for listed in runs:
        if listed.status not in ACTIVE:
            continue
        # Read both again right before deciding: the run may have just ended or started.
        holder = locks.holder(export)
        if (
            holder is not None
            and holder.run_id == listed.run_id
            and holder.expires_at >= time.time()
        ):
            continue
        record = rt.runs.get(export, listed.run_id)
        if record is not None and record.status in ACTIVE:
            _finish(rt, record, "failed",
                    "abandoned: its hold on the export lapsed before it ended")  # fmt: skip


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
        _end_orphans(rt, export.name, runs)
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
        return record
    owner = secrets.token_hex(8)
    try:
        _claim(rt, record, owner, rt.settings.run_lease_seconds)
    except RunActive as exc:
        if exc.active_run_id == record.run_id:
            raise RunBusy(f"run {record.run_id} is being exported by another worker") from None
        return _finish(rt, record, "failed", f"superseded by run {exc.active_run_id}")
    return _perform(rt, record, owner, redeliverable=True)


def give_up(rt: Runtime, job: Job) -> RunRecord | None:
    """The queue gave up on a job (poison queue): end its run as failed, saying why."""
    record = rt.runs.get(job.export, job.run_id)
    if record is None or record.status not in ACTIVE:
        return record
    holder = ExportLocks(rt.runs).holder(record.export)
    worked_on = holder and holder.run_id == record.run_id and holder.owner != QUEUED
    if worked_on and holder and holder.expires_at > time.time():
        # A worker is still on it. If it finishes, fine; if it dies, its lease lapses and
        # the timer ends the run as abandoned (see _end_orphans).
        log.warning("Run %s: the queue gave up on a job a worker still holds", record.run_id)
        return record
    reason = record.error or "the worker failed without recording an error"
    _finish(rt, record, "failed", f"gave up after {record.attempts} attempt(s): {reason}")
    ExportLocks(rt.runs).release(record.export, record.run_id)
    return record


def run_now(
    rt: Runtime, name: str, *, dry_run: bool = False, allow_large_removal: bool = False
) -> RunRecord:
    """Export the newest snapshot in this process, recorded as a ``cli`` run."""
    export = export_or_raise(rt, name)
    if not export.enabled:  # a disabled export's data transfer may not be acknowledged
        raise ExportDisabled(f"export {name!r} is disabled; set enabled to true to run it")
    try:
        snapshot, problem = _newest_settled(rt, export).id, ""
    except SourceError as exc:
        snapshot, problem = "", str(exc)
    record = _new_record(
        rt, export, snapshot, "cli", dry_run=dry_run, allow_large_removal=allow_large_removal
    )
    owner = secrets.token_hex(8)
    _claim(rt, record, owner, rt.settings.run_lease_seconds)
    rt.runs.save(record)
    if problem:
        ExportLocks(rt.runs).release(name, record.run_id)
        return _finish(rt, record, "failed", problem)
    return _perform(rt, record, owner, redeliverable=False)


def _perform(rt: Runtime, record: RunRecord, owner: str, *, redeliverable: bool) -> RunRecord:
    started = time.monotonic()
    locks = ExportLocks(rt.runs)
    record.status, record.started_at, record.error = "running", now(), ""
    record.attempts += 1
    record.batch_size = record.batch_size or rt.settings.upload_batch_size
    try:
        rt.runs.save(record)
    except RecordChanged:
        # Ended (or taken) by another writer since this worker read it: theirs stands.
        locks.release(record.export, record.run_id, owner)
        return _reread(rt, record)

    def save_progress(progress: RunRecord) -> None:
        lease.check()  # only the holder writes the record
        rt.runs.save(progress)

    try:
        with _Lease(locks, record, owner, rt.settings.run_lease_seconds) as lease:
            export = export_or_raise(rt, record.export)
            if not export.enabled:
                raise ExportDisabled(f"export {export.name!r} was disabled before the run started")
            plan = pipeline.plan(rt.source, export, record.snapshot)
            client = rt.snapchat(rt.definitions.connection(export.connection))
            record.audience_id = _audience(rt, export, client, dry_run=record.dry_run)
            pipeline.run(
                plan,
                rt.source,
                client,
                record=record,
                on_progress=save_progress,
                check_lease=lease.check,
                state=rt.state() if export.mode == "mirror" else None,
            )
            _read_audience_status(client, record)
            lease.check()
    except (LeaseLost, RecordChanged) as exc:
        # Another worker took the export over, or another writer ended the run meanwhile:
        # the record is theirs now, and this worker writes nothing more.
        log.warning("Run %s of export %s stopped: %s", record.run_id, record.export, exc)
        locks.release(record.export, record.run_id, owner)
        return _reread(rt, record)
    except RETRY_LATER as exc:
        if not redeliverable:
            return _end(rt, record, owner, "failed", str(exc), started=started)
        log.warning(
            "Run %s of export %s interrupted (%s); it resumes from batch %d on the next delivery",
            record.run_id,
            record.export,
            exc,
            record.batches + 1,
        )
        record.status, record.error = "queued", f"attempt {record.attempts} interrupted: {exc}"
        try:
            rt.runs.save(record)
        except RecordChanged:
            log.warning("Run %s: its record was changed meanwhile; left as it is", record.run_id)
        # Hand the export back to the queued run, so that its next delivery may take it.
        locks.renew(record.export, record.run_id, owner, QUEUE_CLAIM_SECONDS, new_owner=QUEUED)
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


def _audience(rt: Runtime, export: Export, client: SnapchatClient, *, dry_run: bool) -> str:
    """The export's audience ID; for an export that names none, the one the app created
    (found again by name if its record was lost), created now if there is none yet."""
    if export.audience_id or export.new_audience is None:
        return export.audience_id
    created = CreatedAudiences(rt.runs)
    known = created.get(export.name)
    if known:
        return known
    wanted = export.new_audience
    found = client.find_segment(wanted.ad_account_id, wanted.name)
    if found is None and dry_run:
        return ""  # a dry run creates nothing; everything counts as to be added
    if found is None:
        found = client.create_segment(
            wanted.ad_account_id,
            name=wanted.name,
            description=wanted.description,
            retention_in_days=wanted.retention_in_days,
        )
        log.info("Export %s: created audience %s in ad account %s", export.name, found,
                 wanted.ad_account_id)  # fmt: skip
    created.remember(export.name, found)
    return found


def _read_audience_status(client: SnapchatClient, record: RunRecord) -> None:
    """Record what Snapchat reports about the audience now (matching happens later)."""
    if not record.audience_id:
        return
    try:
        segment = client.get_segment(record.audience_id)
    except SnapchatError as exc:
        log.warning("Run %s: could not read the audience's status: %s", record.run_id, exc)
        return
    size = segment.get("approximate_number_users")
    record.approximate_number_users = size if isinstance(size, int) else None
    record.upload_status = str(segment.get("upload_status") or "")
    record.targetable_status = str(segment.get("targetable_status") or "")


class _Lease:
    """This worker's hold on the export, as far as it can be sure of it.

    Renewed on a thread every third of the lease. ``check`` raises LeaseLost once another
    worker has taken the export over, and LeaseUncertain (retry later) once no renewal has
    been confirmed for most of a lease, even while a renewal call is still hanging, so that
    a worker never goes on uploading on a lease that may have lapsed.
    """

    def __init__(self, locks: ExportLocks, record: RunRecord, owner: str, ttl: float) -> None:
        self._locks, self._record, self._owner, self._ttl = locks, record, owner, ttl
        self._margin = ttl / 6
        self._valid_until = time.monotonic() + ttl - self._margin
        self._taken = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{record.run_id}",
                                        daemon=True)  # fmt: skip

    def check(self) -> None:
        if self._taken:
            raise LeaseLost(f"run {self._record.run_id}: another worker took over the export")
        if time.monotonic() >= self._valid_until:
            raise LeaseUncertain(
                f"run {self._record.run_id}: its hold on the export could not be renewed"
            )

    def _renew(self) -> None:
        record = self._record
        while not self._stop.wait(self._ttl / 3):
            asked = time.monotonic()
            try:
                if not self._locks.renew(record.export, record.run_id, self._owner, self._ttl):
                    self._taken = True
                    return
                self._valid_until = asked + self._ttl - self._margin
            except StorageError:
                log.warning("Run %s: could not renew its lock; trying again", record.run_id)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _end(
    rt: Runtime, record: RunRecord, owner: str, status: str, error: str, *, started: float
) -> RunRecord:
    finished = _finish(rt, record, status, error, started)
    ExportLocks(rt.runs).release(record.export, record.run_id, owner)
    return finished


def _reread(rt: Runtime, record: RunRecord) -> RunRecord:
    return rt.runs.get(record.export, record.run_id) or record


def _finish(
    rt: Runtime, record: RunRecord, status: str, error: str, started: float | None = None
) -> RunRecord:
    """End the run as ``status``, unless another writer changed its record since it was read.

    Every record write is conditional (see ``RunLog.save``), and the first writer wins: the
    one that loses the race returns the record as the other writer left it, and never
    overwrites it. So a run that ended stays as it ended, and a run whose worker wrote
    progress after an orphan check or the poison handler read it is not ended on stale
    grounds (the next check decides again from fresh data).
    """
    record.status, record.error, record.finished_at = status, error, now()
    try:
        rt.runs.save(record)
    except RecordChanged:
        fresh = _reread(rt, record)
        log.warning(
            "Run %s of export %s: not marked %s, since another writer changed its record "
            "meanwhile (it is %s)",
            record.run_id,
            record.export,
            status,
            fresh.status,
        )
        return fresh
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


def exports_overview(rt: Runtime) -> list[ExportStatus]:
    overview = []
    for export in rt.definitions.exports:
        recent = rt.runs.recent(export.name, limit=1)
        overview.append(ExportStatus(export, recent[0] if recent else None))
    return overview
