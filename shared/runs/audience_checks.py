"""After a run: what Snapchat made of it.

Snapchat matches uploaded identifiers asynchronously and reports only a segment's
``upload_status``, a rounded ``approximate_number_users`` and ``targetable_status``. So a
successful (non-dry) run gets later **audience checks**, each one GET of the segment:

- the first ones on the queue, ``AUDIENCE_CHECK_MINUTES`` after the run's end (5, 15 and 60
  by default): a job ``audience-check`` whose ``part`` is the number of checks made before it,
  so a duplicate or stale delivery is dropped;
- then the timer (``on_timer``), every last-step minutes, until ``AUDIENCE_CHECK_LIMIT``
  checks were made, or at once when the queue's check is over ten minutes late.

A check never changes the run's status: a failed one is logged and counted, and the next
one is scheduled as usual. Its figures and warnings (``shared.core.audience_health``) are
stored as the record's ``audience_check``; each new warning is counted in telemetry by code.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters import telemetry
from shared.adapters.jobqueue import AUDIENCE_CHECK, Job
from shared.adapters.snapchat import SnapchatClient
from shared.core import audience_health as health
from shared.core.definitions import Export
from shared.core.errors import ExportError, RecordChanged, StorageError
from shared.core.runrecord import RunRecord, RunStatus
from shared.export import lookalikes
from shared.runtime import Runtime

log = logging.getLogger(__name__)

LATE = timedelta(minutes=10)  # a queued check this late is taken by the timer
HISTORY = 500  # runs read for add mode's retention window and the previous rates


def checkable(record: RunRecord) -> bool:
    return record.status == RunStatus.SUCCEEDED and not record.dry_run and bool(record.audience_id)


def queue_first(rt: Runtime, record: RunRecord) -> None:
    """Queue a run's first check (a run that just succeeded); never raises: if the queue
    fails, the timer takes the check once it is late."""
    if checkable(record):
        _queue(rt, record, 0)


def _queue(rt: Runtime, record: RunRecord, checks: int) -> None:
    minutes = rt.settings.audience_check_minutes
    delay = health.delay_minutes(checks, minutes) * 60
    job = Job(run_id=record.run_id, export=record.export, snapshot=record.snapshot or "-",
              step=AUDIENCE_CHECK, part=checks)  # fmt: skip
    try:
        rt.jobs.send(job, delay_seconds=delay)
    except StorageError as exc:
        log.warning("Run %s: its audience check could not be queued (%s); the timer takes it",
                    record.run_id, exc)  # fmt: skip


def perform(rt: Runtime, job: Job) -> RunRecord | None:
    """The queue's delivery of a check: made if it is the one due, then the next queued
    while the back-off lasts (later ones are the timer's)."""
    record = rt.runs.get(job.export, job.run_id)
    if record is None or not checkable(record):
        return record
    made = int((record.audience_check or {}).get("checks", 0))
    if job.part != made:
        log.info("Run %s: audience check %d was made already", record.run_id, job.part + 1)
        return record
    checked = check(rt, record)
    after = checked.audience_check or {}
    made = int(after.get("checks", 0))
    if after.get("next_check_at") and made < len(rt.settings.audience_check_minutes):
        _queue(rt, checked, made)
    return checked


def due(record: RunRecord, minutes: tuple[int, ...], at: datetime) -> bool:
    """Whether the timer should check the run now: its next check is due and is the
    timer's, or was the queue's and is late."""
    if not checkable(record):
        return False
    found = record.audience_check
    if found is None:
        ended = health.parse_iso(record.finished_at)
        return ended is not None and ended + timedelta(minutes=minutes[0]) + LATE <= at
    next_at = health.parse_iso(found.get("next_check_at"))
    if next_at is None:
        return False
    late = LATE if int(found.get("checks", 0)) < len(minutes) else timedelta(0)
    return next_at + late <= at


def check(rt: Runtime, record: RunRecord, at: datetime | None = None) -> RunRecord:
    """One check of the run's audience, stored on its record (StorageError raised: the queue
    delivers the check again). Snapchat's or the definitions' trouble is logged, counted as
    a check and retried at the next one."""
    at = at or datetime.now(UTC)
    export = rt.definitions.export(record.export)
    before = record.audience_check or {}
    checks = int(before.get("checks", 0)) + 1
    segment: dict[str, Any] | None = None
    try:
        if export is None:
            raise ExportError(f"export {record.export!r} is no longer defined")
        client = rt.snapchat(rt.definitions.connection(export.connection))
        segment = client.segment(record.audience_id)
        found = _read(rt, client, record, export, segment=segment, at=at)
    except ExportError as exc:
        log.warning("Run %s: audience check %d failed: %s", record.run_id, checks, exc)
        found = {**_EMPTY, **before}
        found["warnings"] = list(before.get("warnings", []))
    limit = rt.settings.audience_check_limit
    found["checks"] = checks
    found["next_check_at"] = health.next_check_at(checks, rt.settings.audience_check_minutes,
                                                  limit, at)  # fmt: skip
    if _settled(before, found):
        found["next_check_at"] = None
    saved = _save(rt, record, found)
    if saved is record:
        _count_new_warnings(record.export, before, found)
        if export is not None and export.lookalike is not None and segment is not None:
            lookalikes.follow_seed(rt, export, segment, client=client)  # it logs its trouble
    return saved


_EMPTY: dict[str, Any] = {
    "read_at": None, "upload_status": "", "targetable_status": "", "matched_estimate": None,
    "match_rate": None, "match_rate_basis": None, "kind": None, "warnings": [],
}  # fmt: skip


def _read(
    rt: Runtime,
    client: SnapchatClient,
    record: RunRecord,
    export: Export,
    *,
    segment: dict[str, Any],
    at: datetime,
) -> dict[str, Any]:
    matched = health.matched_estimate(segment)
    runs = [r for r in rt.runs.recent(record.export, limit=HISTORY) if r.run_id <= record.run_id]
    retention = segment.get("retention_in_days")
    retention = retention if type(retention) is int else None
    if record.mode == "mirror":
        denominator, basis = health.managed(record), "managed"
    else:
        ended = health.parse_iso(record.finished_at) or at
        days = retention or health.LIFETIME_DAYS
        denominator, basis = health.sent_in_retention(runs, ended, days), "sent_in_retention"
    rate = health.match_rate(matched, denominator)
    targetable = str(segment.get("targetable_status") or "")
    count = None
    if export.new_audience is not None:  # the app creates audiences in this ad account
        count = client.segment_count(export.new_audience.ad_account_id)
    previous = health.rates_before(runs, record.run_id)
    found = [
        health.too_few_users(targetable, matched),
        health.rate_dropped(rate, previous, rt.settings.match_drop_percent),
        health.cap_near(count),
    ]
    return {
        "read_at": health.iso(at),
        "upload_status": str(segment.get("upload_status") or ""),
        "targetable_status": targetable,
        "matched_estimate": matched,
        "match_rate": rate,
        "match_rate_basis": basis if rate is not None else None,
        "kind": health.single_kind(record),
        "retention_in_days": retention,
        "warnings": [w for w in found if w],
    }


def _settled(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Processing done and the estimate the same as the check before: nothing more to learn."""
    return (
        after.get("upload_status") == "COMPLETE"
        and after.get("targetable_status") not in ("", "NOT_READY")
        and after.get("matched_estimate") is not None
        and before.get("matched_estimate") == after.get("matched_estimate")
    )


def _save(rt: Runtime, record: RunRecord, found: dict[str, Any]) -> RunRecord:
    """Store the check; a record changed meanwhile is read again and written once more
    unless another check was stored already."""
    for _ in range(2):
        record.audience_check = found
        try:
            rt.runs.save(record)
            return record
        except RecordChanged:
            fresh = rt.runs.get(record.export, record.run_id)
            if (
                fresh is None
                or int((fresh.audience_check or {}).get("checks", 0)) >= found["checks"]
            ):
                return fresh or record
            record = fresh
    return record


def _count_new_warnings(export: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    had = {w.get("code") for w in before.get("warnings", [])}
    for found in after.get("warnings", []):
        if found["code"] not in had:
            log.warning("Export %s: audience warning %s", export, found["code"])
            telemetry.audience_warning(export, found["code"])


def on_timer(rt: Runtime, exports: list[Export], at: datetime) -> None:
    """The timer's part: the checks due, and the add-mode audiences whose members age out
    (counted in telemetry for the alert). One export's trouble does not stop the others."""
    minutes = rt.settings.audience_check_minutes
    for export in exports:
        try:
            runs = rt.runs.recent(export.name, limit=20)
            done = [r for r in runs if checkable(r)]
            if done and due(done[0], minutes, at):
                check(rt, done[0], at)
            found = age_out(export, runs, at)
        except ExportError as exc:
            log.warning("Timer: audience check of export %s failed: %s", export.name, exc)
            continue
        if found is not None:
            telemetry.audience_warning(export.name, found["code"])


def age_out(export: Export, runs: list[RunRecord], at: datetime) -> dict[str, str] | None:
    """members_age_out for an add-mode export, from its runs (newest first)."""
    done = [r for r in runs if checkable(r)]
    if not done:
        return None
    retention = export.new_audience.retention_in_days if export.new_audience else None
    if retention is None:
        retention = (done[0].audience_check or {}).get("retention_in_days")
    return health.age_out(str(export.mode), done[0].finished_at, retention, at)


def overview(export: Export, runs: list[RunRecord], at: datetime) -> dict[str, Any]:
    """The export overview's ``audience_health``, from its runs (newest first)."""
    aging = age_out(export, runs, at)
    return health.health(runs, [aging] if aging else [])
