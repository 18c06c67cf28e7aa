"""One run spread over several instances: jobs on the queue, and no scheduler of our own.

A run whose snapshot is larger than ``SPLIT_ABOVE_MB`` (with two partitions or more) is
split by the worker that takes its job (``start``); the platform's scale-out on the queue
trigger then puts the jobs on as many instances as it likes:

1. **read**, one job per partition: it reads the partition once, normalises and hashes
   every identifier column, and spills its digests, sorted and distinct, as encrypted runs
   cut by leading byte (``shared.export.read``, ``shared.export.digest_pool``);
2. **judge**, mirror mode only, one job: the removal safeguard needs the whole run's
   changes before any request. It merges the readers' runs bucket by bucket with the
   stored state, judges the removals, commits the touched set, stages the new state
   (uncommitted blocks of its blob), and spills each bucket's additions and removals for
   the job that will send them;
3. **send**, one job per range of leading bytes: it de-duplicates its range across the
   readers' runs (add mode) or takes the judge's changes (mirror mode), and uploads them.
   All send jobs share the connection's rate limit (``RequestSlots``).

The job that completes a step creates the step's *gate* entity (a conditional insert) and
queues the next step; the one that completes the last step commits the new mirror state
and ends the run. Every job has a lease of its own, renewed while it works, and a
checkpoint of its accepted requests: a job whose worker died is taken over, once its lease
has lapsed, by the queue's next delivery of its message, which skips the requests already
accepted. The run keeps one record: the jobs' counts, added up, are written to it as jobs
finish, and a failure of any job ends it. See docs/how-it-works.md, *Split runs*.

The steps call the same stages (``shared.export``) as a run on one instance does
(``shared.export.pipeline``): this module is the other driver of that pipeline, deciding
whether to split, passing the gates, queueing the next step and ending the run. One job's
delivery is ``shared.runs.split_job``; the run's counts, its jobs' added up, are
``shared.runs.split_totals``.
"""

from __future__ import annotations

import logging
import time
import traceback

from shared.adapters import telemetry
from shared.adapters.export_locks import SPLIT
from shared.adapters.jobqueue import Job
from shared.adapters.snapchat import SnapchatClient
from shared.adapters.spillstore import SpillStore
from shared.adapters.split_log import Entry, SplitLog
from shared.core.definitions import Mode
from shared.core.endings import EndReason
from shared.core.errors import (
    ConfigurationError,
    ExportError,
    LeaseLost,
    RecordChanged,
    Transient,
)
from shared.core.runrecord import Progress, RunRecord, RunStatus
from shared.export import audiences, mirror
from shared.export.plan import Plan, partitions, plan_run
from shared.export.read import require_rows
from shared.runs import locking
from shared.runs.records import finish, reread
from shared.runs.split_job import JUDGE, READ, SEND, SplitJob, entry_name, fingerprint, gate_name
from shared.runs.split_totals import requests_made, total
from shared.runtime import Runtime

log = logging.getLogger(__name__)

MAX_SEND_JOBS = 64  # a power of two, at most 256 (one leading byte each)


def should_split(rt: Runtime, plan: Plan) -> bool:
    """Whether a run of ``plan`` is split: over the size setting, two partitions or more."""
    return len(partitions(plan)) >= 2 and plan.snapshot.size > rt.settings.split_above_bytes


def send_jobs(readers: int) -> int:
    """How many send jobs: a power of two, as many as the readers or more, at most 64."""
    jobs = 1
    while jobs < min(readers, MAX_SEND_JOBS):
        jobs *= 2
    return jobs


def start(rt: Runtime, record: RunRecord, plan: Plan, owner: str) -> bool:
    """Split the run, which this worker holds: record the plan, hand the export's lock to
    the run's jobs, and queue the read jobs. False (the run stays on this worker) when the
    mirror-state key, which the jobs' spill keys are derived from, is not available."""
    try:
        rt.state_key()
    except ConfigurationError as exc:
        log.warning("Run %s is not split over instances, since %s", record.run_id, exc)
        return False
    readers = len(partitions(plan))
    splits = SplitLog(rt.runs, record.run_id)
    splits.put(Entry("plan", done=True, result={
        "readers": readers, "segments": len(plan.segments), "version": plan.snapshot.version,
        "definition": fingerprint(plan.export)}))  # fmt: skip
    locking.hand_over(rt, record, owner)
    record.progress = Progress(source_version=plan.snapshot.version,
                               jobs={READ: readers, f"{READ}_done": 0})  # fmt: skip
    rt.runs.save(record)
    _queue_reads(rt, record, splits)
    log.info("Run %s of export %s split into %d read jobs", record.run_id, record.export,
             readers)  # fmt: skip
    return True


def is_split(rt: Runtime, record: RunRecord) -> bool:
    """Whether the run was split: its jobs hold its export."""
    return locking.held_by(rt, record, SPLIT)


def resume(rt: Runtime, record: RunRecord) -> None:
    """The run's own job, delivered again after it was split (its worker may have died
    before it queued every read job): queue those not done yet again."""
    splits = SplitLog(rt.runs, record.run_id)
    if splits.get(gate_name(READ)) is None:
        _queue_reads(rt, record, splits)


def _queue_reads(rt: Runtime, record: RunRecord, splits: SplitLog) -> None:
    plan = splits.get("plan")
    done = {entry.name for entry in splits.entries(f"{READ}-") if entry.done}
    for part in range(int(plan.result["readers"]) if plan else 0):
        if entry_name(READ, part) not in done:
            rt.jobs.send(_job(record, READ, part))


def perform(rt: Runtime, job: Job) -> RunRecord | None:
    """One delivery of a split run's job: do it (unless it is done, or another worker holds
    it), then, if it completed its step, queue the next one."""
    record = rt.runs.get(job.export, job.run_id)
    if record is None or not record.active:
        log.info("Job %s of run %s: the run is not active; dropped", entry_name(job.step, job.part),
                 job.run_id)  # fmt: skip
        return record
    if not is_split(rt, record):  # a job for a run that was never split: not ours to act on
        log.warning("Job %s of run %s: the run is not split over instances; dropped",
                    entry_name(job.step, job.part), job.run_id)  # fmt: skip
        return record
    with telemetry.run_context(record):
        work = SplitJob(rt, record, job)
        try:
            again = work.do()
            return _next_step(work, again=again)
        except (LeaseLost, RecordChanged) as exc:
            log.warning("Job %s of run %s stopped: %s", work.name, record.run_id, exc)
            return reread(rt, record)
        except Transient as exc:
            work.interrupted(exc)
            raise  # the queue delivers the job again; it resumes after its checkpoint
        except ExportError as exc:
            log.error("Job %s of run %s failed: %s", work.name, record.run_id, exc)
            return fail(rt, record, str(exc), reason=EndReason.of(exc))
        except Exception as exc:  # noqa: BLE001 - any failure must end the run
            frames = "".join(traceback.format_tb(exc.__traceback__)[-3:])
            log.error("Job %s of run %s failed unexpectedly: %s\n%s", work.name,
                      record.run_id, type(exc).__name__, frames)  # fmt: skip
            message = f"internal error ({type(exc).__name__}) in job {work.name}; see the log"
            return fail(rt, record, message, reason=EndReason.INTERNAL)


def give_up(rt: Runtime, job: Job) -> RunRecord | None:
    """The queue gave up on one of the run's jobs: the run fails, unless a worker still
    holds the job."""
    record = rt.runs.get(job.export, job.run_id)
    if record is None or not record.active:
        return record
    name = entry_name(job.step, job.part)
    entry = SplitLog(rt.runs, record.run_id).get(name)
    if entry is not None and entry.owner and entry.expires_at > time.time():
        log.warning("Run %s: the queue gave up on job %s, which a worker holds", record.run_id,
                    name)  # fmt: skip
        return record
    last_error = (entry.error if entry else "") or "the worker failed without recording an error"
    return fail(rt, record, f"job {name} kept failing: {last_error}", reason=EndReason.GAVE_UP)


def fail(rt: Runtime, record: RunRecord, error: str, *, reason: EndReason) -> RunRecord:
    """End the run as failed (with what its jobs did, added up), free its export, and
    delete what its jobs spilled."""
    return _end_run(rt, record, SplitLog(rt.runs, record.run_id), RunStatus.FAILED, error,
                    reason=reason)  # fmt: skip


def _clean_up(rt: Runtime, record: RunRecord, splits: SplitLog) -> None:
    locking.release(rt, record)
    SpillStore(rt.spill_container, f"{record.run_id}/", "").delete_all()
    splits.delete_all()


# -- from one step to the next -------------------------------------------------------------


def _next_step(work: SplitJob, *, again: bool) -> RunRecord:
    """If this job completed its step, pass the gate (once, whoever gets there first) and
    queue the next step; a job delivered ``again`` after it was done also queues it, in
    case the one that passed the gate died before it did."""
    step, splits = work.job.step, work.splits
    done = 1 if step == JUDGE else sum(e.done for e in splits.entries(f"{step}-"))
    if done < _expected(work, step):
        return _publish(work)
    gate = Entry(gate_name(step))
    if not splits.create(gate):
        found = splits.get(gate.name)
        if found is None or found.done or not again:
            return _publish(work)
        gate = found
    if step == READ:
        _after_reads(work, gate)
    elif step == JUDGE:
        _queue(work, SEND, work.send_job_count())
    else:
        return _end(work)
    gate.done = True
    splits.update(gate)
    return _publish(work)


def _expected(work: SplitJob, step: str) -> int:
    if step == READ:
        planned = work.splits.get("plan")
        return int(planned.result["readers"]) if planned else 0
    return work.send_job_count() if step == SEND else 1


def _after_reads(work: SplitJob, gate: Entry) -> None:
    """Every partition was read: refuse a segment without rows (nothing was sent), then
    queue the judge (mirror mode) or the send jobs."""
    rt, record = work.rt, work.record
    export = work.export()
    plan = plan_run(rt.source, export, record.snapshot)
    progress = total(work.splits, record)
    require_rows(plan, progress)
    jobs = send_jobs(len(partitions(plan)))
    gate.result = {"send_jobs": jobs}
    work.splits.update(gate)
    if export.mode is Mode.MIRROR:
        _queue(work, JUDGE, 1)
    else:
        _queue(work, SEND, jobs)


def _queue(work: SplitJob, step: str, jobs: int) -> None:
    for part in range(jobs):
        work.rt.jobs.send(_job(work.record, step, part))


def _publish(work: SplitJob) -> RunRecord:
    """Write the jobs' counts, added up, to the run's record."""
    for _ in range(5):
        fresh = reread(work.rt, work.record)
        if not fresh.active:
            return fresh
        fresh.progress = total(work.splits, fresh)
        try:
            work.rt.runs.save(fresh)
            return fresh
        except RecordChanged:
            continue
    return reread(work.rt, work.record)


def _end(work: SplitJob) -> RunRecord:
    """Every job was done: commit the new mirror state, read the audience's status, end
    the run as succeeded, free the export and delete what the jobs left."""
    rt = work.rt
    record = reread(rt, work.record)
    if not record.active:
        return record
    export = rt.definitions.require(record.export)
    judge = work.splits.get(JUDGE)
    if export.mode is Mode.MIRROR and not record.dry_run and judge is not None:
        mirror.commit_staged(rt.state(), export, record.audience_id, judge.result["blocks"])
    client = rt.snapchat(rt.definitions.connection(export.connection))
    return _end_run(rt, record, work.splits, RunStatus.SUCCEEDED, "",
                    read_status=None if record.dry_run else client)  # fmt: skip


_END_TRIES = 10  # a run's end that loses to another job's progress write is tried again


def _end_run(
    rt: Runtime,
    record: RunRecord,
    splits: SplitLog,
    status: str,
    error: str,
    *,
    reason: EndReason | None = None,
    read_status: SnapchatClient | None = None,
) -> RunRecord:
    """End the run with its jobs' counts added up; then free the export and delete what the
    jobs left. Other jobs write the record too (their progress): an end that loses to one of
    those is decided again on a fresh copy, so the run never stays active for want of a
    writer; one that finds the run ended by someone else leaves it as it is."""
    ended = record
    for _ in range(_END_TRIES):
        fresh = reread(rt, record)
        if not fresh.active:
            return fresh
        fresh.progress = total(splits, fresh)
        fresh.requests, fresh.retries = requests_made(splits)
        if read_status is not None:
            audiences.read_status(read_status, fresh)
        ended = finish(rt, fresh, status, error, reason=reason)
        if ended is fresh:
            _clean_up(rt, fresh, splits)
            return ended
    return ended


def _job(record: RunRecord, step: str, part: int) -> Job:
    return Job(run_id=record.run_id, export=record.export, snapshot=record.snapshot,
               step=step, part=part)  # fmt: skip
