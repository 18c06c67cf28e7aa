"""Add mode: every distinct identifier sent once, bucket range by bucket range, or while reading.

``add_buckets`` sends a kind's distinct digests from the digest pool, bucket by bucket, over
a range of leading bytes: all of them on one instance (``add_all``), one range per send job
of a split run (``shared.runs.split_job``).

Adding while reading (``AddsWhileReading``, for an export of one segment on one instance):
waiting for the whole read before the first request leaves Snapchat's rate limit unused
for as long as the read takes. So in add mode, each kind's digests go, in the order they are
read, through a filter of what was seen before (``shared.core.first_seen.FirstSeen``):

- a digest the filter certainly never had is *first*; every ``batch_size`` of those make
  a request, sent at once, and are pooled as the kind's *sent* set;
- any other digest (seen before, or a false positive of the filter), and the first ones
  that did not fill a last request, are pooled as the kind's *held back* set.

Both sets are pooled like any digests (``shared.export.digest_pool``: held, spilled beyond
the budget). After the read, bucket by bucket, the kind's held back digests not in its sent
set are sent as well, in full requests. Every distinct identifier is then sent exactly once.
Each kind's requests depend only on the snapshot's rows, their order and the batch size;
how two kinds' requests interleave also depends on where the CSV blocks end, which is fixed
by the code and its settings. So a resumed attempt rebuilds the same requests and skips
those already accepted (were the code changed in between, the checkpoint's fingerprint
would differ, and the run would start over rather than skip).

The price: a run that fails on a malformed partition may already have added identifiers of
the partitions before it (adding never removes anyone, and the next run sends the rest).
Mirror mode, which may remove, sends nothing before the whole read and the removal safeguard;
neither does a run of several segments, so that a segment found empty fails the run before
any request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from shared.adapters.blobsource import BlobSource
from shared.adapters.spillstore import SpillStore
from shared.core import digestsets
from shared.core.first_seen import BITS, FirstSeen
from shared.core.identifiers import IdentifierType, Tally
from shared.core.runrecord import Progress
from shared.export.digest_pool import BUCKET_TARGET, EVERY_LEADING_BYTE, DigestPool
from shared.export.plan import AttemptSpec, Plan
from shared.export.read import count_kind, read_snapshot, require_rows
from shared.export.send import Sender


def add_buckets(
    pool: DigestPool,
    kind: IdentifierType,
    sender: Sender,
    batch_size: int,
    within: tuple[int, int] = EVERY_LEADING_BYTE,
) -> int:
    """Send the kind's distinct digests (whose leading byte is ``within``: a split run's send
    job) in batches, bucket by bucket, until all were accepted; how many there were."""
    distinct = 0
    for _, bucket in pool.buckets(kind.schema, within):
        distinct += digestsets.count(bucket)
        sender.send_batches("POST", kind, bucket, batch_size)
    sender.drain()
    return distinct


def add_all(
    plan: Plan,
    pool: DigestPool,
    *,
    tallies: dict[str, Tally],
    attempt: AttemptSpec,
    progress: Progress,
    sender: Sender,
) -> None:
    """Send every distinct valid identifier, kind by kind, bucket by bucket."""
    with sender:
        for kind, _ in plan.export.columns:
            sender.counts = progress.by_type[kind.schema]
            distinct = add_buckets(pool, kind, sender, attempt.batch_size)
            count_kind(kind, tallies[kind.schema], pool.read(kind.schema) - distinct, progress)


def add_while_reading(
    plan: Plan,
    source: BlobSource,
    attempt: AttemptSpec,
    *,
    progress: Progress,
    sender: Sender,
    spill: SpillStore,
    memory_budget: int,
    check_lease: Callable[[], None],
) -> None:
    """Add mode on one segment: send while reading (``AddsWhileReading``), then the rest."""
    kinds = {kind.schema: kind for kind, _ in plan.export.columns}
    pool = DigestPool(spill, memory_budget, pooled_names(kinds))
    with sender:
        adds = AddsWhileReading(pool, sender, kinds, progress.by_type, attempt.batch_size)
        tallies = read_snapshot(plan, source, progress=progress, pool=pool,
                                publish=sender.publish, check_lease=check_lease,
                                adds=adds)  # fmt: skip
        try:
            adds.finish()
            progress.spilled_bytes = pool.spilled_bytes
            require_rows(plan, progress)
            for schema, kind in kinds.items():
                distinct = adds.send_held_back(schema)
                count_kind(kind, tallies[schema], adds.read(schema) - distinct, progress)
        except BaseException:
            # As in read_snapshot: a spill that finish() started ends before the files are
            # deleted.
            with contextlib.suppress(Exception):
                pool.settle()
            raise
        progress.spilled_bytes = pool.spilled_bytes


def sent_name(schema: str) -> str:
    """The name the kind's digests sent while reading are pooled under."""
    return f"{schema}.sent"


def held_back_name(schema: str) -> str:
    """The name the kind's digests held back until after the read are pooled under."""
    return f"{schema}.later"


def pooled_names(schemas: Iterable[str]) -> list[str]:
    """Every name adds while reading pool digests under, for these kinds."""
    return [name for schema in schemas for name in (sent_name(schema), held_back_name(schema))]


class AddsWhileReading:
    """Add mode's requests sent while the snapshot is read, and after it the rest, once."""

    def __init__(
        self,
        pool: DigestPool,
        sender: Sender,
        kinds: dict[str, IdentifierType],
        by_type: dict[str, dict[str, int]],
        batch_size: int,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._kinds = kinds
        self._by_type = by_type
        self._batch = batch_size * digestsets.DIGEST
        bits = BITS
        while bits > 64 and bits * len(kinds) > BITS:
            bits //= 2  # the kinds share the filter's memory
        self._seen = {schema: FirstSeen(bits) for schema in kinds}
        self._first = {schema: bytearray() for schema in kinds}

    def add(self, schema: str, digests: bytes) -> None:
        """The kind's next digests, in the order they were read."""
        first, again = self._seen[schema].add(digests)
        self._take(schema, first, again)

    def _take(self, schema: str, first: bytes, again: bytes) -> None:
        if again:
            self._pool.add(held_back_name(schema), again)
        pending = self._first[schema]
        pending += first
        while len(pending) >= self._batch:
            batch = bytes(pending[: self._batch])
            del pending[: self._batch]
            self._pool.add(sent_name(schema), batch)
            self._sender.counts = self._by_type[schema]
            self._sender.send("POST", self._kinds[schema], batch)

    def finish(self) -> None:
        """The read is over: what the filters still hold is judged, and the first digests
        short of a request join the held back set."""
        for schema, seen in self._seen.items():
            first, again = seen.finish()
            self._take(schema, first, again)
            self._pool.add(held_back_name(schema), bytes(self._first[schema]))
            self._first[schema] = bytearray()
        self._sender.drain()

    def send_held_back(self, schema: str) -> int:
        """Send the kind's held back digests that were not sent yet, bucket by bucket (in
        full requests: a bucket's few are carried over to the next); how many distinct
        digests the kind has in all."""
        pool, kind = self._pool, self._kinds[schema]
        done, rest = sent_name(schema), held_back_name(schema)
        distinct = pool.read(done)  # the sent set holds each digest once
        buckets = digestsets.bucket_count(pool.read(done) + pool.read(rest), BUCKET_TARGET)
        self._sender.counts = self._by_type[schema]
        pending = bytearray()
        for bucket in range(buckets):
            low, high = digestsets.bounds(bucket, buckets)
            unsent = pool.between(rest, low, high)
            if not unsent:
                continue
            for piece in pool.pieces(done, low, high):  # each sorted: no merge needed
                unsent = digestsets.minus(unsent, piece)
            distinct += digestsets.count(unsent)
            pending += unsent
            while len(pending) >= self._batch:
                self._sender.send("POST", kind, bytes(pending[: self._batch]))
                del pending[: self._batch]
        if pending:
            self._sender.send("POST", kind, bytes(pending))
        self._sender.drain()
        return distinct

    def read(self, schema: str) -> int:
        """How many valid digests of the kind were read, repeats included."""
        return self._pool.read(sent_name(schema)) + self._pool.read(held_back_name(schema))
