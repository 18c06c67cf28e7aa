"""One run spread over several instances: jobs on the queue, and no scheduler of our own.

A run whose snapshot is larger than ``SPLIT_ABOVE_MB`` (with two partitions or more) is
split by the worker that takes its job (``start``); the platform's scale-out on the queue
trigger then puts the jobs on as many instances as it likes:

1. **read**, one job per partition: it reads the partition once, normalises and hashes
   every identifier column, and spills its digests, sorted and distinct, as encrypted runs
   cut by leading byte (``shared.export.digest_pool``);
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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import secrets
import threading
import time
import traceback

from shared.adapters import telemetry
from shared.adapters.export_locks import SPLIT, ExportLocks
from shared.adapters.jobqueue import Job
from shared.adapters.snapchat import SnapchatClient
from shared.adapters.spillstore import SpillStore, derived_key, random_attempt
from shared.adapters.split_log import Entry, SplitLog
from shared.adapters.statestore import TOUCHED
from shared.core import digestsets
from shared.core.definitions import Export, Mode
from shared.core.errors import (
    ConfigurationError,
    ExportError,
    LeaseLost,
    RecordChanged,
    RemovalBlocked,
    RunBusy,
    SourceError,
    Transient,
)
from shared.core.mirror_diff import diff
from shared.core.runrecord import Progress, RunRecord, RunStatus
from shared.export import audiences, pipeline
from shared.export.digest_pool import Collected, Spilled
from shared.runs.locking import QUEUE_CLAIM_SECONDS, Heartbeat
from shared.runs.records import error_kind, finish, reread
from shared.runtime import Runtime

log = logging.getLogger(__name__)

READ, JUDGE, SEND = "read", "judge", "send"
MAX_SEND_JOBS = 64  # a power of two, at most 256 (one leading byte each)


def wanted(rt: Runtime, plan: pipeline.Plan) -> bool:
    """Whether a run of ``plan`` is split: over the size setting, two partitions or more."""
    return len(partitions(plan)) >= 2 and plan.snapshot.size > rt.settings.split_above_bytes


def partitions(plan: pipeline.Plan) -> list[tuple[int, str]]:
    """Every partition the run reads, as (segment index, blob name): read job ``n`` reads
    the ``n``-th."""
    return [(i, name) for i, segment in enumerate(plan.segments) for name in segment.partitions]


def send_jobs(readers: int) -> int:
    """How many send jobs: a power of two, as many as the readers or more, at most 64."""
    jobs = 1
    while jobs < min(readers, MAX_SEND_JOBS):
        jobs *= 2
    return jobs


def start(rt: Runtime, record: RunRecord, plan: pipeline.Plan, owner: str) -> bool:
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
        "definition": _fingerprint(plan.export)}))  # fmt: skip
    if not ExportLocks(rt.runs).renew(record.export, record.run_id, owner,
                                      QUEUE_CLAIM_SECONDS, new_owner=SPLIT):  # fmt: skip
        raise LeaseLost(f"run {record.run_id}: another worker took over the export")
    record.progress = Progress(source_version=plan.snapshot.version,
                               jobs={READ: readers, f"{READ}_done": 0})  # fmt: skip
    rt.runs.save(record)
    _queue_reads(rt, record, splits)
    log.info("Run %s of export %s split into %d read jobs", record.run_id, record.export,
             readers)  # fmt: skip
    return True


def handed_on(rt: Runtime, record: RunRecord) -> bool:
    """Whether the run was split: its jobs hold its export."""
    holder = ExportLocks(rt.runs).holder(record.export)
    return holder is not None and holder.run_id == record.run_id and holder.owner == SPLIT


def resume(rt: Runtime, record: RunRecord) -> None:
    """The run's own job, delivered again after it was split (its worker may have died
    before it queued every read job): queue those not done yet again."""
    splits = SplitLog(rt.runs, record.run_id)
    if splits.get(_gate(READ)) is None:
        _queue_reads(rt, record, splits)


def _queue_reads(rt: Runtime, record: RunRecord, splits: SplitLog) -> None:
    plan = splits.get("plan")
    done = {entry.name for entry in splits.entries(f"{READ}-") if entry.done}
    for part in range(int(plan.result["readers"]) if plan else 0):
        if _name(READ, part) not in done:
            rt.jobs.send(_job(record, READ, part))


def perform(rt: Runtime, job: Job) -> RunRecord | None:
    """One delivery of a split run's job: do it (unless it is done, or another worker holds
    it), then, if it completed its step, queue the next one."""
    record = rt.runs.get(job.export, job.run_id)
    if record is None or not record.active:
        log.info("Job %s of run %s: the run is not active; dropped", _name(job.step, job.part),
                 job.run_id)  # fmt: skip
        return record
    if not handed_on(rt, record):  # a job for a run that was never split: not ours to act on
        log.warning("Job %s of run %s: the run is not split over instances; dropped",
                    _name(job.step, job.part), job.run_id)  # fmt: skip
        return record
    with telemetry.run_context(record):
        work = _Work(rt, record, job)
        try:
            return work.perform()
        except (LeaseLost, RecordChanged) as exc:
            log.warning("Job %s of run %s stopped: %s", work.name, record.run_id, exc)
            return reread(rt, record)
        except Transient as exc:
            work.interrupted(exc)
            raise  # the queue delivers the job again; it resumes after its checkpoint
        except ExportError as exc:
            log.error("Job %s of run %s failed: %s", work.name, record.run_id, exc)
            return fail(rt, record, str(exc), kind=error_kind(exc))
        except Exception as exc:  # noqa: BLE001 - any failure must end the run
            frames = "".join(traceback.format_tb(exc.__traceback__)[-3:])
            log.error("Job %s of run %s failed unexpectedly: %s\n%s", work.name,
                      record.run_id, type(exc).__name__, frames)  # fmt: skip
            message = f"internal error ({type(exc).__name__}) in job {work.name}; see the log"
            return fail(rt, record, message, kind="internal")


def give_up(rt: Runtime, job: Job) -> RunRecord | None:
    """The queue gave up on one of the run's jobs: the run fails, unless a worker still
    holds the job."""
    record = rt.runs.get(job.export, job.run_id)
    if record is None or not record.active:
        return record
    name = _name(job.step, job.part)
    entry = SplitLog(rt.runs, record.run_id).get(name)
    if entry is not None and entry.owner and entry.expires_at > time.time():
        log.warning("Run %s: the queue gave up on job %s, which a worker holds", record.run_id,
                    name)  # fmt: skip
        return record
    reason = (entry.error if entry else "") or "the worker failed without recording an error"
    return fail(rt, record, f"job {name} kept failing: {reason}", kind="gave_up")


def fail(rt: Runtime, record: RunRecord, error: str, *, kind: str) -> RunRecord:
    """End the run as failed (with what its jobs did, added up), free its export, and
    delete what its jobs spilled."""
    return _end_run(rt, record, SplitLog(rt.runs, record.run_id), RunStatus.FAILED, error,
                    kind=kind)  # fmt: skip


def _clean_up(rt: Runtime, record: RunRecord, splits: SplitLog) -> None:
    ExportLocks(rt.runs).release(record.export, record.run_id)
    SpillStore(rt.spill_container, f"{record.run_id}/", "").delete_all()
    splits.delete_all()


class _Work:
    """One delivery of one job: its lease, its entity, the step's work."""

    def __init__(self, rt: Runtime, record: RunRecord, job: Job) -> None:
        self.rt, self.record, self.job = rt, record, job
        self.name = _name(job.step, job.part)
        self.splits = SplitLog(rt.runs, record.run_id)
        self.owner = secrets.token_hex(8)
        self.ttl = rt.settings.run_lease_seconds
        self.entry: Entry | None = None
        self._lock = threading.Lock()
        self._key = b""
        self._heartbeat = Heartbeat(self._renew, self.ttl, what=f"run {record.run_id} job "
                                    f"{self.name}", taken="another worker took the job over, "
                                    "or the run ended")  # fmt: skip

    def perform(self) -> RunRecord:
        entry = self._take()
        if entry is None:
            # Delivered again while its worker still holds it (or its lease has not lapsed
            # yet since that worker died): come back later.
            raise RunBusy(f"run {self.record.run_id}: job {self.name} is held by another worker")
        again = entry.done  # delivered again after it was done (its worker died after)
        if not entry.done:
            with self._heartbeat:
                {READ: self._read, JUDGE: self._judge, SEND: self._send}[self.job.step]()
        log.info("Job %s of run %s done", self.name, self.record.run_id)
        return self._next_step(again=again)

    def interrupted(self, exc: ExportError) -> None:
        """A transient failure: free the job at once for the next delivery, saying why."""
        entry = self.entry
        if entry is None or entry.owner != self.owner:
            return
        entry.error, entry.expires_at, entry.owner = str(exc), 0.0, ""
        with contextlib.suppress(ExportError), self._lock:
            self.splits.update(entry)
        log.warning("Job %s of run %s interrupted (%s); it resumes on the next delivery",
                    self.name, self.record.run_id, exc)  # fmt: skip

    def _take(self) -> Entry | None:
        """This job's entity, leased to this worker (or done); None when another holds it."""
        for _ in range(3):
            entry = self.splits.get(self.name)
            if entry is None:
                entry = Entry(self.name, owner=self.owner, expires_at=time.time() + self.ttl)
                if self.splits.create(entry):
                    self.entry = entry
                    return entry
                continue
            if entry.done:
                return entry
            if entry.owner and entry.expires_at > time.time():
                return None
            entry.owner, entry.expires_at = self.owner, time.time() + self.ttl
            if self.splits.update(entry):
                self.entry = entry
                return entry
        return None

    def _renew(self) -> bool:
        entry = self.entry
        assert entry is not None
        with self._lock:
            entry.expires_at = time.time() + self.ttl
            if not self.splits.update(entry):
                return False
        return self._renew_export()

    def _renew_export(self) -> bool:
        """Renew the export's lock, which every job of the run renews: a write that loses to
        another job's renewal is fine, as long as the lock is still the run's."""
        record, locks = self.record, ExportLocks(self.rt.runs)
        for _ in range(3):
            if locks.renew(record.export, record.run_id, SPLIT, QUEUE_CLAIM_SECONDS):
                return True
            holder = locks.holder(record.export)
            if holder is None or (holder.run_id, holder.owner) != (record.run_id, SPLIT):
                return False
        return True  # renewed by the run's other jobs meanwhile

    def _save(self, *, done: bool = False) -> None:
        entry = self.entry
        assert entry is not None
        with self._lock:
            entry.done = done
            if done:
                entry.owner, entry.error = "", ""
            if not self.splits.update(entry):
                raise LeaseLost(f"run {self.record.run_id}: job {self.name} was taken over")

    # -- the steps ---------------------------------------------------------------------------

    def _export(self) -> Export:
        """The export as defined when the run was split (a job refuses a changed one)."""
        export = self.rt.definitions.require(self.record.export)
        planned = self.splits.get("plan")
        if planned is None or planned.result.get("definition") != _fingerprint(export):
            raise SourceError(
                f"export {export.name!r}: its definition changed while run "
                f"{self.record.run_id} was split over instances; nothing more is sent. "
                "Start a new run."
            )
        return export

    def _attempt(self) -> pipeline.AttemptSpec:
        record = self.record
        return pipeline.AttemptSpec(
            run_id=record.run_id,
            audience_id=record.audience_id,
            batch_size=record.batch_size,
            dry_run=record.dry_run,
            allow_large_removal=record.allow_large_removal,
        )

    def _store(self, job: str, attempt: str) -> SpillStore:
        run_id = self.record.run_id
        self._key = self._key or self.rt.state_key()
        key = derived_key(self._key, run_id, job, attempt)
        return SpillStore(self.rt.spill_container, f"{run_id}/{job}/", f"{run_id}/{job}/{attempt}/",
                          key)  # fmt: skip

    def _read(self) -> None:
        rt, record, entry = self.rt, self.record, self.entry
        assert entry is not None
        export = self._export()
        plan = pipeline.plan(rt.source, export, record.snapshot)
        planned = self.splits.get("plan")
        if planned is None or planned.result.get("version") != plan.snapshot.version:
            raise SourceError(
                f"snapshot {record.snapshot}: its files changed while run {record.run_id} was "
                "read; nothing was sent. Start a new run."
            )
        index, name = partitions(plan)[self.job.part]
        segment = plan.segments[index]
        one = pipeline.Plan(export, plan.snapshot,
                            (dataclasses.replace(segment, partitions=(name,)),))  # fmt: skip
        attempt = random_attempt()
        store = self._store(self.name, attempt)
        store.delete_all()  # what an earlier attempt of this job left
        schemas = [kind.schema for kind, _ in export.columns]
        collected = Collected(store, rt.settings.spill_memory_bytes, schemas)
        progress = Progress()
        tallies = pipeline.scan(one, rt.source, progress=progress, collected=collected,
                                publish=lambda: None, check_lease=self._check)  # fmt: skip
        collected.flush()
        entry.result = {
            "attempt": attempt,
            "segment": segment.source.label,
            "rows": progress.rows_read,
            "spilled": store.bytes_written,
            "runs": {s: [[run.name, run.number] for run in collected.runs(s)] for s in schemas},
            "kinds": {s: {"rows": t.rows, "empty": t.empty, "invalid": t.invalid,
                          "prehashed": t.prehashed, "read": collected.read(s)}
                      for s, t in tallies.items()},
        }  # fmt: skip
        self._save(done=True)

    def _check(self) -> None:
        """Between blocks and requests: the job must still be this worker's, and the run
        still active (a failure of another job ends it, and frees its export)."""
        self._heartbeat.check()

    def _collected(self) -> Collected:
        """Everything the readers read, as one collection."""
        runs: dict[str, list[Spilled]] = {}
        read: dict[str, int] = {}
        for entry in self.splits.entries(f"{READ}-"):
            store = self._store(entry.name, entry.result["attempt"])
            for schema, found in entry.result["runs"].items():
                spilled = runs.setdefault(schema, [])
                spilled.extend((store, store.open(name, number)) for name, number in found)
                read[schema] = read.get(schema, 0) + entry.result["kinds"][schema]["read"]
        return Collected.of_runs(self._store("none", "none"), runs, read)

    def _judge(self) -> None:
        rt, record, entry = self.rt, self.record, self.entry
        assert entry is not None
        export, attempt = self._export(), self._attempt()
        state = rt.state()
        collected = self._collected()
        changes = {kind.schema: pipeline.mirror_changes(collected, state, export.name,
                   record.audience_id, kind.schema, stage=not attempt.dry_run)
                   for kind, _ in export.columns}  # fmt: skip
        progress = Progress()
        kinds = {
            schema: {"distinct": c.distinct, "added": c.added, "removed": c.removed,
                     "unchanged": c.unchanged}
            for schema, c in changes.items()
        }  # fmt: skip
        try:
            pipeline.check_removals(export, attempt, progress, changes)
        except RemovalBlocked:
            entry.result = {"kinds": kinds, "safeguard": progress.safeguard}
            self._save()
            raise
        for found in changes.values():
            if found.touched is not None and (found.added or found.removed):
                found.touched.commit()
        jobs = self._jobs()
        ranges = tuple(digestsets.bounds(j, jobs) for j in range(jobs))
        store = self._store(JUDGE, judged := random_attempt())
        store.delete_all()
        inputs: list[dict[str, list[list[object]]]] = [{} for _ in range(jobs)]
        blocks: dict[str, tuple[int, int]] = {}
        for kind, _ in export.columns:
            schema = kind.schema
            writer = None
            if not attempt.dry_run:
                writer = state.writer(export.name, record.audience_id, schema)
            for job, bucket, old, touched in pipeline.paired_buckets(
                collected, state, export.name, record.audience_id, schema, ranges=ranges
            ):
                change = diff(bucket, old, touched)
                pair: list[object] = []
                for digests in (change.added, change.removed):
                    run = store.write(schema, digests) if digests else None
                    pair += [run.name, run.number] if run else ["", 0]
                inputs[job].setdefault(schema, []).append(pair)
                if writer is not None:
                    writer.add(bucket)
                self._check()
            if writer is not None:
                blocks[schema] = writer.stage_all()
        for job in range(jobs):
            self.splits.put(Entry(_name(SEND, job), result={"changes": inputs[job]}))
        entry.result = {"attempt": judged, "kinds": kinds, "safeguard": progress.safeguard,
                        "blocks": blocks, "spilled": store.bytes_written}  # fmt: skip
        self._save(done=True)

    def _send(self) -> None:
        rt, entry = self.rt, self.entry
        assert entry is not None
        export, attempt = self._export(), self._attempt()
        client = rt.snapchat(rt.definitions.connection(export.connection), shared_slots=True)
        resume = Progress(**entry.progress) if entry.progress else Progress()
        progress = Progress()
        accepted = resume.batches

        def save(current: Progress) -> None:
            entry.progress = dataclasses.asdict(current)
            self._save()

        sender = pipeline.Sender(client, attempt, progress, accepted=accepted,
                                 expected=resume.checkpoint, on_progress=save,
                                 check_lease=self._check)  # fmt: skip
        distinct: dict[str, int] = {}
        try:
            with sender:
                if export.mode is Mode.MIRROR:
                    self._send_changes(export, sender, progress)
                else:
                    distinct = self._send_all(export, sender, progress)
        except BaseException:
            kept = resume if not sender.restart and progress.batches < accepted else progress
            entry.progress = dataclasses.asdict(kept)
            raise
        finally:
            totals = entry.result.setdefault("requests", [0, 0])
            totals[0] += client.counters.requests
            totals[1] += client.counters.retries
        entry.progress = dataclasses.asdict(progress)
        entry.result["distinct"] = distinct
        self._save(done=True)

    def _jobs(self) -> int:
        """How many send jobs the run has (the reading step's gate says)."""
        gate = self.splits.get(_gate(READ))
        return int(gate.result.get("send_jobs", 0)) if gate else 0

    def _send_all(
        self, export: Export, sender: pipeline.Sender, progress: Progress
    ) -> dict[str, int]:
        collected = self._collected()
        within = digestsets.bounds(self.job.part, self._jobs())
        distinct: dict[str, int] = {}
        for kind, _ in export.columns:
            sender.counts = progress.by_type.setdefault(kind.schema, {})
            distinct[kind.schema] = pipeline.add_kind(collected, kind, sender,
                                                      self.record.batch_size, within)  # fmt: skip
        return distinct

    def _send_changes(self, export: Export, sender: pipeline.Sender, progress: Progress) -> None:
        assert self.entry is not None
        judge = self.splits.get(JUDGE)
        assert judge is not None
        store = self._store(JUDGE, judge.result["attempt"])
        changes = self.entry.result["changes"]
        size = self.record.batch_size
        for kind, _ in export.columns:
            sender.counts = progress.by_type.setdefault(kind.schema, {})
            for added, added_number, removed, removed_number in changes.get(kind.schema, []):
                for method, name, number in (("POST", added, added_number),
                                             ("DELETE", removed, removed_number)):  # fmt: skip
                    if not name:
                        continue
                    found = store.read(store.open(name, number), 0, digestsets.LEADING_BYTES)
                    for batch in digestsets.chunks(found, size):
                        sender.send(method, kind, batch)
            sender.drain()

    # -- from one step to the next -------------------------------------------------------------

    def _next_step(self, *, again: bool) -> RunRecord:
        """If this job completed its step, pass the gate (once, whoever gets there first) and
        queue the next step; a job delivered ``again`` after it was done also queues it, in
        case the one that passed the gate died before it did."""
        step = self.job.step
        done = 1 if step == JUDGE else sum(e.done for e in self.splits.entries(f"{step}-"))
        if done < self._expected(step):
            return self._publish()
        gate = Entry(_gate(step))
        if not self.splits.create(gate):
            found = self.splits.get(gate.name)
            if found is None or found.done or not again:
                return self._publish()
            gate = found
        if step == READ:
            self._after_reads(gate)
        elif step == JUDGE:
            self._queue(SEND, self._jobs())
        else:
            return self._end()
        gate.done = True
        self.splits.update(gate)
        return self._publish()

    def _expected(self, step: str) -> int:
        if step == READ:
            planned = self.splits.get("plan")
            return int(planned.result["readers"]) if planned else 0
        return self._jobs() if step == SEND else 1

    def _after_reads(self, gate: Entry) -> None:
        """Every partition was read: refuse a segment without rows (nothing was sent), then
        queue the judge (mirror mode) or the send jobs."""
        rt, record = self.rt, self.record
        export = self._export()
        plan = pipeline.plan(rt.source, export, record.snapshot)
        progress = _total(self.splits, record)
        pipeline.require_rows(plan, progress)
        jobs = send_jobs(len(partitions(plan)))
        gate.result = {"send_jobs": jobs}
        self.splits.update(gate)
        if export.mode is Mode.MIRROR:
            self._queue(JUDGE, 1)
        else:
            self._queue(SEND, jobs)

    def _queue(self, step: str, jobs: int) -> None:
        for part in range(jobs):
            self.rt.jobs.send(_job(self.record, step, part))

    def _publish(self) -> RunRecord:
        """Write the jobs' counts, added up, to the run's record."""
        for _ in range(5):
            fresh = reread(self.rt, self.record)
            if not fresh.active:
                return fresh
            fresh.progress = _total(self.splits, fresh)
            try:
                self.rt.runs.save(fresh)
                return fresh
            except RecordChanged:
                continue
        return reread(self.rt, self.record)

    def _end(self) -> RunRecord:
        """Every job was done: commit the new mirror state, read the audience's status, end
        the run as succeeded, free the export and delete what the jobs left."""
        rt = self.rt
        record = reread(rt, self.record)
        if not record.active:
            return record
        export = rt.definitions.require(record.export)
        judge = self.splits.get(JUDGE)
        if export.mode is Mode.MIRROR and not record.dry_run and judge is not None:
            state = rt.state()
            for schema, (blocks, generation) in judge.result["blocks"].items():
                state.commit_staged(export.name, record.audience_id, schema,
                                    (int(blocks), int(generation)))  # fmt: skip
            for kind, _ in export.columns:
                state.delete(export.name, record.audience_id, kind.schema, TOUCHED)
        client = rt.snapchat(rt.definitions.connection(export.connection))
        return _end_run(rt, record, self.splits, RunStatus.SUCCEEDED, "",
                        read_status=None if record.dry_run else client)  # fmt: skip


_END_TRIES = 10  # a run's end that loses to another job's progress write is tried again


def _end_run(
    rt: Runtime,
    record: RunRecord,
    splits: SplitLog,
    status: str,
    error: str,
    *,
    kind: str = "",
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
        fresh.progress = _total(splits, fresh)
        fresh.requests, fresh.retries = _requests(splits)
        if read_status is not None:
            audiences.read_status(read_status, fresh)
        ended = finish(rt, fresh, status, error, kind=kind)
        if ended is fresh:
            _clean_up(rt, fresh, splits)
            return ended
    return ended


def _total(splits: SplitLog, record: RunRecord) -> Progress:
    """The run's progress: its jobs' counts, added up."""
    total = Progress(source_version=record.progress.source_version, jobs=dict(record.jobs))
    planned = splits.get("plan")
    reads = [e for e in splits.entries(f"{READ}-") if e.done]
    sends = splits.entries(f"{SEND}-")
    judge = splits.get(JUDGE)
    read = _add_reads(total, reads, several=bool(planned and planned.result["segments"] > 1))
    distinct = _add_sends(total, sends)
    if judge is not None:
        total.safeguard = judge.result.get("safeguard", {})
        total.spilled_bytes += judge.result.get("spilled", 0)
        for schema, counts in judge.result.get("kinds", {}).items():
            distinct[schema] = counts["distinct"]
            total.by_type.setdefault(schema, {})["unchanged"] = counts["unchanged"]
            total.unchanged += counts["unchanged"]
    known = judge is not None or (len(sends) > 0 and all(e.done for e in sends))
    for schema, kind in total.by_type.items():
        for name in ("empty", "invalid", "prehashed"):
            setattr(total, name, getattr(total, name) + kind.get(name, 0))
        if known and schema in distinct:
            kind["duplicates"] = read.get(schema, 0) - distinct[schema]
            total.duplicates += kind["duplicates"]
    total.jobs.update({f"{READ}_done": len(reads), SEND: len(sends),
                       f"{SEND}_done": sum(e.done for e in sends)})  # fmt: skip
    return total


def _add_reads(total: Progress, reads: list[Entry], *, several: bool) -> dict[str, int]:
    """The read jobs' counts; how many digests of each kind they read."""
    read: dict[str, int] = {}
    segments: dict[str, int] = {}
    for entry in reads:
        result = entry.result
        total.rows_read += result["rows"]
        total.spilled_bytes += result["spilled"]
        segments[result["segment"]] = segments.get(result["segment"], 0) + result["rows"]
        for schema, counts in result["kinds"].items():
            kind = total.by_type.setdefault(schema, {})
            for name in ("rows", "empty", "invalid", "prehashed"):
                kind[name] = kind.get(name, 0) + counts[name]
            read[schema] = read.get(schema, 0) + counts["read"]
    total.rows_scanned = total.rows_read
    if several:
        total.by_segment = {label: {"rows": rows} for label, rows in segments.items()}
    return read


def _add_sends(total: Progress, sends: list[Entry]) -> dict[str, int]:
    """The send jobs' counts; how many distinct digests of each kind they sent (add mode)."""
    distinct: dict[str, int] = {}
    for entry in sends:
        progress = entry.progress
        for name in ("batches", "uploaded", "resumed", "added", "removed"):
            setattr(total, name, getattr(total, name) + progress.get(name, 0))
        for schema, counts in progress.get("by_type", {}).items():
            kind = total.by_type.setdefault(schema, {})
            for name in ("added", "removed"):
                kind[name] = kind.get(name, 0) + counts.get(name, 0)
        for schema, count in entry.result.get("distinct", {}).items():
            distinct[schema] = distinct.get(schema, 0) + count
    return distinct


def _requests(splits: SplitLog) -> tuple[int, int]:
    requests = retries = 0
    for entry in splits.entries(f"{SEND}-"):
        made = entry.result.get("requests", [0, 0])
        requests, retries = requests + made[0], retries + made[1]
    return requests, retries


def _fingerprint(export: Export) -> str:
    return hashlib.sha256(repr(export).encode()).hexdigest()[:32]


def _name(step: str, part: int) -> str:
    return step if step == JUDGE else f"{step}-{part:05d}"


def _gate(step: str) -> str:
    return f"gate-{step}"


def _job(record: RunRecord, step: str, part: int) -> Job:
    return Job(run_id=record.run_id, export=record.export, snapshot=record.snapshot,
               step=step, part=part)  # fmt: skip
