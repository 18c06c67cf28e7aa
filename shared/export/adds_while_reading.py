"""Add mode: identifiers sent while the snapshot is still being read, and the rest after it.

Waiting for the whole read before the first request leaves Snapchat's rate limit unused
for as long as the read takes. So in add mode, each kind's digests go, in the order they are
read, through a filter of what was seen before (``shared.core.first_seen.FirstSeen``):

- a digest the filter certainly never had is *first*; every ``batch_size`` of those make
  a request, sent at once, and are kept as the kind's *sent* set;
- any other digest (seen before, or a false positive of the filter), and the first ones
  that did not fill a last request, are kept as the kind's *later* set.

Both sets are collected like any digests (``shared.export.digest_pool``: held, spilled beyond the
budget). After the read, bucket by bucket, the kind's later digests that are not in its sent
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

from collections.abc import Iterable
from typing import Protocol

from shared.core import digestsets
from shared.core.first_seen import BITS, FirstSeen
from shared.core.identifiers import IdentifierType
from shared.export.digest_pool import BUCKET_TARGET, Collected


def sent(schema: str) -> str:
    """The name the kind's sent set is collected under."""
    return f"{schema}.sent"


def later(schema: str) -> str:
    """The name the kind's later set is collected under."""
    return f"{schema}.later"


def collected_names(schemas: Iterable[str]) -> list[str]:
    return [name for schema in schemas for name in (sent(schema), later(schema))]


class Send(Protocol):
    """What ``EarlyAdds`` needs of the run's sender (``shared.export.pipeline.Sender``)."""

    counts: dict[str, int]

    def send(self, method: str, kind: IdentifierType, batch: bytes) -> None: ...

    def drain(self) -> None: ...


class EarlyAdds:
    def __init__(
        self,
        collected: Collected,
        sender: Send,
        kinds: dict[str, IdentifierType],
        by_type: dict[str, dict[str, int]],
        batch_size: int,
    ) -> None:
        self._collected = collected
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
            self._collected.add(later(schema), again)
        pending = self._first[schema]
        pending += first
        while len(pending) >= self._batch:
            batch = bytes(pending[: self._batch])
            del pending[: self._batch]
            self._collected.add(sent(schema), batch)
            self._sender.counts = self._by_type[schema]
            self._sender.send("POST", self._kinds[schema], batch)

    def finish(self) -> None:
        """The read is over: what the filters still hold is judged, and the first digests
        short of a request join the later set."""
        for schema, seen in self._seen.items():
            first, again = seen.finish()
            self._take(schema, first, again)
            self._collected.add(later(schema), bytes(self._first[schema]))
            self._first[schema] = bytearray()
        self._sender.drain()

    def send_rest(self, schema: str) -> int:
        """Send the kind's later digests that were not sent yet, bucket by bucket (in full
        requests: a bucket's few are carried over to the next); how many distinct digests
        the kind has in all."""
        collected, kind = self._collected, self._kinds[schema]
        done, rest = sent(schema), later(schema)
        distinct = collected.read(done)  # the sent set holds each digest once
        buckets = digestsets.bucket_count(
            collected.read(done) + collected.read(rest), BUCKET_TARGET
        )
        self._sender.counts = self._by_type[schema]
        pending = bytearray()
        for bucket in range(buckets):
            low, high = digestsets.bounds(bucket, buckets)
            unsent = collected.between(rest, low, high)
            if not unsent:
                continue
            for piece in collected.pieces(done, low, high):  # each sorted: no merge needed
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
        return self._collected.read(sent(schema)) + self._collected.read(later(schema))
