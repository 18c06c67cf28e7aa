"""One delivery of one job of a split run: its lease, its entity, and its step's work.

A split run (``shared.runs.split``) has read jobs (one per partition), in mirror mode one
judge job, and send jobs (one per range of leading bytes). Each keeps an entity of its own
in the split log (``shared.adapters.split_log``): leased to the worker doing it, renewed
while it works, with the job's checkpoint and, once done, its result. A step's work calls the
same stages as a run on one instance (``shared.export``): the read job reads one partition
into a digest pool and spills it; the judge works out each kind's changes and checks the
removals, then spills each bucket's changes for the send job of its range; a send job adds
its range's distinct digests, or sends the judge's changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import secrets
import threading
import time

from shared.adapters.jobqueue import Job
from shared.adapters.spillstore import SpillStore, derived_key, random_attempt
from shared.adapters.split_log import Entry, SplitLog
from shared.adapters.statestore import StateStore
from shared.core import digestsets
from shared.core.definitions import Export, Mode
from shared.core.errors import ExportError, LeaseLost, RemovalBlocked, RunBusy, SourceError
from shared.core.mirror_diff import diff
from shared.core.runrecord import Progress, RunRecord
from shared.export import mirror
from shared.export.add import add_buckets
from shared.export.digest_pool import DigestPool, SpilledRun
from shared.export.plan import AttemptSpec, Plan, partitions, plan_run
from shared.export.read import read_snapshot
from shared.export.send import Sender
from shared.runs import locking
from shared.runs.locking import Heartbeat
from shared.runtime import Runtime

log = logging.getLogger(__name__)

READ, JUDGE, SEND = "read", "judge", "send"


def entry_name(step: str, part: int) -> str:
    """The name of a job's entity in the split log (and of the job in the log)."""
    return step if step == JUDGE else f"{step}-{part:05d}"


def gate_name(step: str) -> str:
    """The name of the step's gate entity, created by the job that completes the step."""
    return f"gate-{step}"


def fingerprint(export: Export) -> str:
    """The export's definition, fingerprinted: a job refuses a definition changed since the
    run was split."""
    return hashlib.sha256(repr(export).encode()).hexdigest()[:32]


class SplitJob:
    """One delivery of one job of a split run: its lease, its entity, the step's work."""

    def __init__(self, rt: Runtime, record: RunRecord, job: Job) -> None:
        self.rt, self.record, self.job = rt, record, job
        self.name = entry_name(job.step, job.part)
        self.splits = SplitLog(rt.runs, record.run_id)
        self.owner = secrets.token_hex(8)
        self.ttl = rt.settings.run_lease_seconds
        self.entry: Entry | None = None
        self._lock = threading.Lock()
        self._key = b""
        self._heartbeat = Heartbeat(self._renew, self.ttl, what=f"run {record.run_id} job "
                                    f"{self.name}", taken="another worker took the job over, "
                                    "or the run ended")  # fmt: skip

    def do(self) -> bool:
        """Take the job and do its step, unless it was done before; whether it was (it is
        then delivered again after its worker died, maybe before it queued the next step).
        RunBusy when another worker holds it."""
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
        return again

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
        return locking.renew_shared(self.rt, self.record)

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

    def export(self) -> Export:
        """The export as defined when the run was split (a job refuses a changed one)."""
        export = self.rt.definitions.require(self.record.export)
        planned = self.splits.get("plan")
        if planned is None or planned.result.get("definition") != fingerprint(export):
            raise SourceError(
                f"export {export.name!r}: its definition changed while run "
                f"{self.record.run_id} was split over instances; nothing more is sent. "
                "Start a new run."
            )
        return export

    def _store(self, job: str, attempt: str) -> SpillStore:
        run_id = self.record.run_id
        self._key = self._key or self.rt.state_key()
        key = derived_key(self._key, run_id, job, attempt)
        return SpillStore(self.rt.spill_container, f"{run_id}/{job}/", f"{run_id}/{job}/{attempt}/",
                          key)  # fmt: skip

    def _read(self) -> None:
        rt, record, entry = self.rt, self.record, self.entry
        assert entry is not None
        export = self.export()
        plan = plan_run(rt.source, export, record.snapshot)
        planned = self.splits.get("plan")
        if planned is None or planned.result.get("version") != plan.snapshot.version:
            raise SourceError(
                f"snapshot {record.snapshot}: its files changed while run {record.run_id} was "
                "read; nothing was sent. Start a new run."
            )
        index, name = partitions(plan)[self.job.part]
        segment = plan.segments[index]
        one = Plan(export, plan.snapshot,
                            (dataclasses.replace(segment, partitions=(name,)),))  # fmt: skip
        attempt = random_attempt()
        store = self._store(self.name, attempt)
        store.delete_all()  # what an earlier attempt of this job left
        schemas = [kind.schema for kind, _ in export.columns]
        pool = DigestPool(store, rt.settings.spill_memory_bytes, schemas)
        progress = Progress()
        tallies = read_snapshot(one, rt.source, progress=progress, pool=pool,
                                publish=lambda: None, check_lease=self._check)  # fmt: skip
        pool.flush()
        entry.result = {
            "attempt": attempt,
            "segment": segment.source.label,
            "rows": progress.rows_read,
            "spilled": store.bytes_written,
            "runs": {s: [[run.name, run.number] for run in pool.runs(s)] for s in schemas},
            "kinds": {s: {"rows": t.rows, "empty": t.empty, "invalid": t.invalid,
                          "prehashed": t.prehashed, "reasons": t.reasons,
                          "read": pool.read(s)}
                      for s, t in tallies.items()},
        }  # fmt: skip
        self._save(done=True)

    def _check(self) -> None:
        """Between blocks and requests: the job must still be this worker's, and the run
        still active (a failure of another job ends it, and frees its export)."""
        self._heartbeat.check()

    def _pool(self) -> DigestPool:
        """Everything the readers read, as one pool."""
        runs: dict[str, list[SpilledRun]] = {}
        read: dict[str, int] = {}
        for entry in self.splits.entries(f"{READ}-"):
            store = self._store(entry.name, entry.result["attempt"])
            for schema, found in entry.result["runs"].items():
                spilled = runs.setdefault(schema, [])
                spilled.extend((store, store.open(name, number)) for name, number in found)
                read[schema] = read.get(schema, 0) + entry.result["kinds"][schema]["read"]
        return DigestPool.of_runs(self._store("none", "none"), runs, read)

    def _judge(self) -> None:
        """Work out every kind's changes and check the removals, as a run on one instance
        does; commit the touched sets; spill the changes for the send jobs."""
        rt, record, entry = self.rt, self.record, self.entry
        assert entry is not None
        export, attempt = self.export(), AttemptSpec.of(record)
        state = rt.state()
        pool = self._pool()
        changes = {kind.schema: mirror.changes_of_kind(pool, state, export.name,
                   record.audience_id, kind.schema, stage=not attempt.dry_run)
                   for kind, _ in export.columns}  # fmt: skip
        progress = Progress()
        kinds = {
            schema: {"distinct": c.distinct, "added": c.added, "removed": c.removed,
                     "unchanged": c.unchanged}
            for schema, c in changes.items()
        }  # fmt: skip
        try:
            mirror.check_removals(export, attempt, progress, changes)
        except RemovalBlocked:
            entry.result = {"kinds": kinds, "safeguard": progress.safeguard}
            self._save()
            raise
        for found in changes.values():
            found.commit_touched()
        jobs = self.send_job_count()
        store = self._store(JUDGE, judged := random_attempt())
        store.delete_all()
        blocks = self._spill_changes(export, attempt, state=state, pool=pool, store=store,
                                     jobs=jobs)  # fmt: skip
        entry.result = {"attempt": judged, "kinds": kinds, "safeguard": progress.safeguard,
                        "blocks": blocks, "spilled": store.bytes_written}  # fmt: skip
        self._save(done=True)

    def _spill_changes(
        self,
        export: Export,
        attempt: AttemptSpec,
        *,
        state: StateStore,
        pool: DigestPool,
        store: SpillStore,
        jobs: int,
    ) -> dict[str, tuple[int, int]]:
        """Spill each bucket's changes for the send job of its range (listed in that job's
        entity), and stage each kind's new state; the staged blocks, per kind."""
        audience = self.record.audience_id
        ranges = tuple(digestsets.bounds(j, jobs) for j in range(jobs))
        inputs: list[dict[str, list[list[object]]]] = [{} for _ in range(jobs)]
        blocks: dict[str, tuple[int, int]] = {}
        for kind, _ in export.columns:
            schema = kind.schema
            writer = None
            if not attempt.dry_run:
                writer = state.writer(export.name, audience, schema)
            for job, bucket, old, touched in mirror.paired_buckets(
                pool, state, export.name, audience, schema, ranges=ranges
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
            self.splits.put(Entry(entry_name(SEND, job), result={"changes": inputs[job]}))
        return blocks

    def _send(self) -> None:
        rt, entry = self.rt, self.entry
        assert entry is not None
        export, attempt = self.export(), AttemptSpec.of(self.record)
        client = rt.snapchat(rt.definitions.connection(export.connection), shared_slots=True)
        resume = Progress(**entry.progress) if entry.progress else Progress()
        progress = Progress()
        accepted = resume.batches

        def save(current: Progress) -> None:
            entry.progress = dataclasses.asdict(current)
            self._save()

        sender = Sender(client, attempt, progress, accepted=accepted,
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

    def send_job_count(self) -> int:
        """How many send jobs the run has (the reading step's gate says)."""
        gate = self.splits.get(gate_name(READ))
        return int(gate.result.get("send_jobs", 0)) if gate else 0

    def _send_all(self, export: Export, sender: Sender, progress: Progress) -> dict[str, int]:
        """Add mode: the job's range of every kind's distinct digests, as a run on one
        instance adds them; how many there were of each kind."""
        pool = self._pool()
        within = digestsets.bounds(self.job.part, self.send_job_count())
        distinct: dict[str, int] = {}
        for kind, _ in export.columns:
            sender.counts = progress.by_type.setdefault(kind.schema, {})
            distinct[kind.schema] = add_buckets(pool, kind, sender, self.record.batch_size,
                                                within)  # fmt: skip
        return distinct

    def _send_changes(self, export: Export, sender: Sender, progress: Progress) -> None:
        """Mirror mode: send the changes the judge spilled for the job's range."""
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
                    sender.send_batches(method, kind, found, size)
            sender.drain()
