"""Mirror mode: what to add and remove so the audience holds exactly the snapshot's set.

Every kind's changes are worked out first and sent only then, so a snapshot that turns out
empty or malformed changes nothing, and the removal safeguard judges the whole run before
any request (the *judge*: ``changes_of_kind`` for each kind, then ``check_removals``). The
first pass over a kind's buckets (``paired_buckets``: each bucket of the new set beside the
same bucket of the stored state, ``shared.adapters.statestore``) counts its changes and
stages its new ``touched`` set (what it is about to send, with what earlier failed runs
left); that set is committed just before the kind's requests, so that if the run fails half
way the next run knows which identifiers' presence is uncertain. The second pass works the
same changes out again, sends them and stages the new state, committed once every kind's
requests were accepted. A split run's judge and send jobs (``shared.runs.split_job``) call
the same functions, spilling each bucket's changes between the two.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from shared.adapters.statestore import TOUCHED, StateStore, Writer
from shared.core import digestsets, identifiers, safeguard
from shared.core.definitions import Export
from shared.core.errors import RemovalBlocked
from shared.core.mirror_diff import diff
from shared.core.runrecord import Progress
from shared.export.digest_pool import EVERY_LEADING_BYTE, DigestPool
from shared.export.plan import AttemptSpec, Plan
from shared.export.read import count_kind
from shared.export.send import Sender

log = logging.getLogger(__name__)


@dataclass
class KindChanges:
    """One kind's mirror diff over all its buckets, counted (the digests are not kept)."""

    distinct: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    managed: int = 0
    confirmed: int = 0
    touched: Writer | None = None  # the kind's new touched set, staged, not committed

    def commit_touched(self) -> None:
        """Commit the kind's new touched set, if it is about to send anything."""
        if self.touched is not None and (self.added or self.removed):
            self.touched.commit()


def changes_of_kind(
    pool: DigestPool, state: StateStore, export: str, audience: str, schema: str, *, stage: bool
) -> KindChanges:
    """The first pass over a kind's buckets: count its changes; with ``stage``, stage its
    new touched set."""
    found = KindChanges()
    if stage:
        found.touched = state.writer(export, audience, schema, TOUCHED)
    for _, bucket, old, touched in paired_buckets(pool, state, export, audience, schema):
        change = diff(bucket, old, touched)
        found.distinct += digestsets.count(bucket)
        found.added += digestsets.count(change.added)
        found.removed += digestsets.count(change.removed)
        found.unchanged += change.unchanged
        found.managed += change.managed
        found.confirmed += change.confirmed
        if found.touched is not None:
            found.touched.add(digestsets.union(touched, change.added, change.removed))
    return found


def paired_buckets(
    pool: DigestPool,
    state: StateStore,
    export: str,
    audience: str,
    schema: str,
    *,
    ranges: tuple[tuple[int, int], ...] = (EVERY_LEADING_BYTE,),
) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """Per bucket of the kind's new set: the index of the leading-byte range it is in
    (``ranges``: ascending, covering them all; a split run's send jobs), it, and the same
    bucket of the stored state and touched sets."""
    old = digestsets.SortedReader(state.read(export, audience, schema))
    touched = digestsets.SortedReader(state.read(export, audience, schema, TOUCHED))
    for index, within in enumerate(ranges):
        for high, bucket in pool.buckets(schema, within):
            yield index, bucket, old.until(high), touched.until(high)


def check_removals(
    export: Export, attempt: AttemptSpec, progress: Progress, changes: dict[str, KindChanges]
) -> None:
    """The removal safeguard, before anything is sent: record its decision, and refuse the
    run when it is over the export's limits and the operator did not allow it."""
    kinds = [
        safeguard.KindChange(
            schema, found.managed, found.removed, found.distinct, confirmed=found.confirmed
        )
        for schema, found in changes.items()
    ]
    verdict = safeguard.judge(
        kinds,
        export.removal_limits,
        audience=attempt.audience_id or "(not created yet)",
        allow_large_removal=attempt.allow_large_removal,
        dry_run=attempt.dry_run,
    )
    progress.safeguard = verdict.as_dict()
    if verdict.decision is safeguard.Decision.BLOCKED:
        raise RemovalBlocked(
            f"removal safeguard: {'; '.join(verdict.problems)}. {safeguard.ADVICE}"
        )
    if verdict.over_limit:
        log.warning(
            "Run %s: removal safeguard %s: %s",
            attempt.run_id,
            verdict.decision.value,
            "; ".join(verdict.problems),
        )


def judge(
    plan: Plan,
    pool: DigestPool,
    *,
    tallies: dict[str, identifiers.Tally],
    state: StateStore,
    attempt: AttemptSpec,
    progress: Progress,
) -> dict[str, KindChanges]:
    """Every kind's changes, counted (and each new touched set staged), then the removal
    safeguard's decision: on one instance, before anything is sent."""
    export = plan.export
    changes: dict[str, KindChanges] = {}
    for kind, _ in export.columns:
        schema = kind.schema
        changes[schema] = changes_of_kind(pool, state, export.name, attempt.audience_id,
                                          schema, stage=not attempt.dry_run)  # fmt: skip
        count_kind(kind, tallies[schema], pool.read(schema) - changes[schema].distinct, progress)
    check_removals(export, attempt, progress, changes)
    return changes


def send_changes(
    plan: Plan,
    pool: DigestPool,
    changes: dict[str, KindChanges],
    *,
    state: StateStore,
    attempt: AttemptSpec,
    progress: Progress,
    sender: Sender,
) -> list[Writer]:
    """The second pass, kind by kind: commit its touched set, send its changes and stage its
    new state (not in a dry run); the staged writers, for ``commit``."""
    export, audience = plan.export, attempt.audience_id
    written: list[Writer] = []
    with sender:
        for kind, _ in export.columns:
            schema = kind.schema
            found = changes[schema]
            counts = progress.by_type[schema]
            sender.counts = counts
            counts["unchanged"] = found.unchanged
            progress.unchanged += found.unchanged
            found.commit_touched()
            writer = None if attempt.dry_run else state.writer(export.name, audience, schema)
            for _, bucket, old, touched in paired_buckets(pool, state, export.name, audience,
                                                          schema):  # fmt: skip
                change = diff(bucket, old, touched)
                sender.send_batches("POST", kind, change.added, attempt.batch_size)
                sender.send_batches("DELETE", kind, change.removed, attempt.batch_size)
                if writer is not None:
                    writer.add(bucket)
            sender.drain()
            if writer is not None:
                written.append(writer)
    return written


def commit(state: StateStore, export: Export, audience: str, written: list[Writer]) -> None:
    """Every kind's requests were accepted: commit the new state, forget the touched sets."""
    for writer in written:
        writer.commit()
    _forget_touched(state, export, audience)


def commit_staged(
    state: StateStore, export: Export, audience: str, staged: dict[str, list[int]]
) -> None:
    """The same for a split run, whose judge staged each kind's new state as uncommitted
    blocks (``staged``: per kind, its blocks and generation)."""
    for schema, (blocks, generation) in staged.items():
        state.commit_staged(export.name, audience, schema, (int(blocks), int(generation)))
    _forget_touched(state, export, audience)


def _forget_touched(state: StateStore, export: Export, audience: str) -> None:
    for kind, _ in export.columns:
        state.delete(export.name, audience, kind.schema, TOUCHED)
