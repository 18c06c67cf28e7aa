"""One active run per export: the export's lock, a worker's lease on it, and ending the
runs whose holder vanished. The one lock API: runs, split jobs, definition changes and
purges all take, renew, hand over and release an export's lock here.

A run takes its export's lock (``shared.adapters.export_locks``) when it is queued, owned by
``QUEUED`` until a worker takes it over with a token of its own; the worker renews it (the
``Lease``) while it exports, and the run releases it when it ends. A split run's worker hands
it over to ``SPLIT``, and every job of the run renews it (``renew_shared``). A lock nobody
renewed in time may be taken over by another run, which records the one it displaced as
abandoned. An admin action (deleting an export, purging its digests) holds the lock for a
moment (``hold``), so that no run starts meanwhile.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator

from shared.adapters.export_locks import QUEUED, SPLIT, ExportLocks, Holder
from shared.core.endings import EndReason
from shared.core.errors import LeaseLost, LeaseUncertain, RunActive, StorageError
from shared.core.runrecord import ACTIVE, RunRecord, RunStatus
from shared.runs.records import finish
from shared.runtime import Runtime

log = logging.getLogger(__name__)

QUEUE_CLAIM_SECONDS = 3600.0  # how long a queued run holds its export before a worker takes it


def claim(rt: Runtime, record: RunRecord, owner: str, ttl: float) -> None:
    """Take the export's lock for the run, or raise RunActive naming the run that has it."""
    taken = ExportLocks(rt.runs).acquire(record.export, record.run_id, owner, ttl)
    if taken.displaced is not None:
        _abandon(rt, record.export, taken.displaced, record.run_id)
    if not taken.acquired:
        holder = taken.holder.run_id if taken.holder else ""
        waiting = taken.holder is not None and taken.holder.owner == QUEUED
        state = (
            "queued, waiting for a worker (without the Functions host, "
            "python -m shared work --once processes the queue)"
            if waiting
            else RunStatus.RUNNING
        )
        raise RunActive(f"export {record.export!r} has an active run {holder}: {state}", holder)


def _abandon(rt: Runtime, export: str, holder: Holder, successor: str) -> None:
    """A run whose worker stopped renewing its lock: record that it ended, and why."""
    stale = rt.runs.get(export, holder.run_id)
    if stale is not None and stale.status in ACTIVE:
        finish(
            rt,
            stale,
            RunStatus.FAILED,
            f"abandoned: no worker renewed its hold on the export in time; run {successor} "
            f"took over ({stale.error or 'no error was recorded'})",
            reason=EndReason.ABANDONED,
        )


def end_orphans(rt: Runtime, export: str, runs: list[RunRecord]) -> None:
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
            finish(rt, record, RunStatus.FAILED,
                   "abandoned: its hold on the export lapsed before it ended",
                   reason=EndReason.ABANDONED)  # fmt: skip


def claim_queued(rt: Runtime, record: RunRecord) -> None:
    """Take the export's lock for a run that is being queued (any worker may take it over)."""
    claim(rt, record, QUEUED, QUEUE_CLAIM_SECONDS)


def hold_queued(rt: Runtime, record: RunRecord, seconds: float) -> None:
    """Set the queued run's hold on its export to end ``seconds`` from now (if it is still
    held for the queued run)."""
    ExportLocks(rt.runs).renew(record.export, record.run_id, QUEUED, seconds)


def release_queued(rt: Runtime, record: RunRecord) -> None:
    """Free the export if it is held for this run while queued (no worker on it)."""
    release(rt, record, QUEUED)


def worker_holds(rt: Runtime, record: RunRecord) -> bool:
    """Whether a worker (not the queue) holds the run's export with a lease still valid."""
    holder = ExportLocks(rt.runs).holder(record.export)
    return (
        holder is not None
        and holder.run_id == record.run_id
        and holder.owner != QUEUED
        and holder.expires_at > time.time()
    )


def hand_back(rt: Runtime, record: RunRecord, owner: str) -> bool:
    """Give the export back to the queued run, so that its next delivery may take it;
    False when ``owner`` no longer holds it (another worker took it over)."""
    return ExportLocks(rt.runs).renew(record.export, record.run_id, owner, QUEUE_CLAIM_SECONDS,
                                      new_owner=QUEUED)  # fmt: skip


def release(rt: Runtime, record: RunRecord, owner: str | None = None) -> None:
    """Free the export, if this run (and ``owner``, when given) still holds it."""
    ExportLocks(rt.runs).release(record.export, record.run_id, owner)


def hand_over(
    rt: Runtime,
    record: RunRecord,
    owner: str,
    to: str = SPLIT,
    seconds: float = QUEUE_CLAIM_SECONDS,
) -> None:
    """Hand the run's hold on its export from ``owner`` to ``to`` (by default, the jobs of a
    split run); LeaseLost when ``owner`` no longer holds it (another worker took it over)."""
    if not ExportLocks(rt.runs).renew(record.export, record.run_id, owner, seconds, new_owner=to):
        raise LeaseLost(f"run {record.run_id}: another worker took over the export")


def renew_shared(
    rt: Runtime, record: RunRecord, owner: str = SPLIT, seconds: float = QUEUE_CLAIM_SECONDS
) -> bool:
    """Renew a hold that several workers renew (every job of a split run): a write that loses
    to another job's renewal is fine, as long as the lock is still the run's; False once it
    is not."""
    locks = ExportLocks(rt.runs)
    for _ in range(3):
        if locks.renew(record.export, record.run_id, owner, seconds):
            return True
        holder = locks.holder(record.export)
        if holder is None or (holder.run_id, holder.owner) != (record.run_id, owner):
            return False
    return True  # renewed by the run's other jobs meanwhile


def held_by(rt: Runtime, record: RunRecord, owner: str) -> bool:
    """Whether the run's export is held for this run by ``owner`` (e.g. ``SPLIT``: the run
    was split, its jobs hold it)."""
    holder = ExportLocks(rt.runs).holder(record.export)
    return holder is not None and holder.run_id == record.run_id and holder.owner == owner


@contextlib.contextmanager
def hold(rt: Runtime, export: str, purpose: str, seconds: float = 300.0) -> Iterator[None]:
    """Hold the export's lock for an admin action (``purpose``: "deleting", "purging"), so
    that no run starts meanwhile; RunActive, naming the active run, when one has it."""
    locks = ExportLocks(rt.runs)
    token = f"{purpose}-{secrets.token_hex(4)}"
    taken = locks.acquire(export, token, token, seconds)
    if not taken.acquired:
        holder = taken.holder.run_id if taken.holder else ""
        raise RunActive(
            f"export {export!r} has an active run {holder}; try again once it has ended", holder
        )
    try:
        yield
    finally:
        locks.release(export, token, token)


class Heartbeat:
    """A hold on something (an export, a job of a split run), as far as this worker can be
    sure of it.

    ``renew`` is called on a thread every third of ``ttl``, and says whether the hold is
    still this worker's. ``check`` raises LeaseLost once it is not (``taken`` says why), and
    LeaseUncertain (retry later) once no renewal has been confirmed for most of a lease,
    even while a renewal call is still hanging, so that a worker never goes on uploading on
    a hold that may have lapsed.
    """

    def __init__(self, renew: Callable[[], bool], ttl: float, *, what: str, taken: str) -> None:
        self._renew_once, self._what, self._taken_reason = renew, what, taken
        self._ttl = ttl
        self._margin = ttl / 6
        self._valid_until = time.monotonic() + ttl - self._margin
        self._taken = False
        self._stop = threading.Event()
        # In the run's context, so that its log records carry the run's IDs.
        renew_all = functools.partial(contextvars.copy_context().run, self._renew)
        self._thread = threading.Thread(target=renew_all, name=f"lease-{what}", daemon=True)

    def check(self) -> None:
        if self._taken:
            raise LeaseLost(f"{self._what}: {self._taken_reason}")
        if time.monotonic() >= self._valid_until:
            raise LeaseUncertain(f"{self._what}: its hold could not be renewed")

    def _renew(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            asked = time.monotonic()
            try:
                if not self._renew_once():
                    self._taken = True
                    return
                self._valid_until = asked + self._ttl - self._margin
            except StorageError:
                log.warning("%s: could not renew its hold; trying again", self._what)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Lease(Heartbeat):
    """This worker's hold on the run's export (see ``Heartbeat``)."""

    def __init__(self, rt: Runtime, record: RunRecord, owner: str) -> None:
        locks, ttl = ExportLocks(rt.runs), rt.settings.run_lease_seconds
        super().__init__(
            lambda: locks.renew(record.export, record.run_id, owner, ttl),
            ttl,
            what=f"run {record.run_id}",
            taken="another worker took over the export",
        )

    def __enter__(self) -> Lease:
        super().__enter__()
        return self
