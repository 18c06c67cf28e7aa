"""The digest pool: one read's digests per kind, held, spilled, handed out as sorted sets.

Every kind's digests are held in memory up to a budget (``SPILL_MEMORY_MB``); over it, each
kind's held digests are sorted, made distinct and spilled as an encrypted run
(``shared.adapters.spillstore``), on a thread of their own while the read goes on (one spill
at a time: a second waits for the first). Afterwards each kind's set is handed out bucket by
bucket (``shared.core.digestsets``), each bucket put together from the runs and what is
still held.
How many buckets depends only on how many digests were read, never on the budget, so a run
gives the same buckets, hence the same requests, whether it spilled or not. Memory stays
bounded whatever the segment's size: what is held (the budget), one spill being sorted and
written (about 1.5 times the budget), and in the end one bucket with its pieces.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from shared.adapters.spillstore import Run, SpillStore
from shared.core import digestsets

BUCKET_TARGET = 1 << 19  # digests read per bucket, at most (16 MiB)
EVERY_LEADING_BYTE = (0, digestsets.LEADING_BYTES)  # a range of leading bytes: all of them
# A bucket's pieces of every spilled run are ranged reads: made side by side, since each one
# mostly waits for storage.
_READERS = ThreadPoolExecutor(8, thread_name_prefix="spill-read")
# Spills are sorted, encrypted and uploaded beside the read, one at a time per pool.
_WRITERS = ThreadPoolExecutor(4, thread_name_prefix="spill-write")


SpilledRun = tuple[SpillStore, Run]  # a spilled run, and the store (key) that reads it


class DigestPool:
    """Each kind's digests as read (repeats included): held up to a budget, spilled beyond
    it; afterwards handed out sorted and distinct, bucket by bucket."""

    def __init__(self, spill: SpillStore, budget_bytes: int, schemas: Iterable[str]) -> None:
        self._spill = spill
        self._budget = budget_bytes
        self._held: dict[str, bytearray] = {schema: bytearray() for schema in schemas}
        self._held_bytes = 0
        self._runs: dict[str, list[SpilledRun]] = {schema: [] for schema in self._held}
        self._read: dict[str, int] = dict.fromkeys(self._held, 0)  # digests, repeats included
        self._kept: dict[str, digestsets.SortedFrames] = {}
        self._writing: Future[None] | None = None  # the spill in progress, if any

    @classmethod
    def of_runs(
        cls, spill: SpillStore, runs: dict[str, list[SpilledRun]], read: dict[str, int]
    ) -> DigestPool:
        """What other jobs of a split run read and spilled (``runs``; ``read``: how many
        digests of each kind they read), as one pool."""
        pool = cls(spill, 0, runs)
        for schema, spilled in runs.items():
            pool._runs[schema] = list(spilled)
            pool._read[schema] = read[schema]
        return pool

    def add(self, schema: str, digests: bytes) -> None:
        if schema in self._kept:
            raise RuntimeError(f"{schema}: digests added after the set was handed out")
        self._held[schema] += digests
        self._held_bytes += len(digests)
        self._read[schema] += digestsets.count(digests)
        if self._held_bytes > self._budget:
            self._spill_held()

    def flush(self) -> None:
        """Spill whatever is still held (a split run's reader hands all it read on)."""
        self._spill_held()
        self.settle()

    def settle(self) -> None:
        """Wait for the spill in progress; raise what it failed with."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def _spill_held(self) -> None:
        # At most one spill in progress: memory holds it and what is read meanwhile.
        self.settle()
        taken = {schema: held for schema, held in self._held.items() if held}
        self._held = {schema: bytearray() for schema in self._held}
        self._held_bytes = 0
        self._writing = _WRITERS.submit(self._write, taken)

    def _write(self, taken: dict[str, bytearray]) -> None:
        for schema in list(taken):
            frames = digestsets.SortedFrames(taken.pop(schema))  # the sorted copy is kept
            run = self._spill.write_frames(schema, frames.sizes, frames.frame)
            self._runs[schema].append((self._spill, run))
            del frames

    def read(self, schema: str) -> int:
        """How many valid digests of the kind were read (repeats included)."""
        return self._read[schema]

    def runs(self, schema: str) -> list[Run]:
        """The kind's spilled runs (of this pool's own store)."""
        self.settle()
        return [run for store, run in self._runs[schema] if store is self._spill]

    def buckets(
        self, schema: str, within: tuple[int, int] = EVERY_LEADING_BYTE
    ) -> Iterator[tuple[int, bytes]]:
        """The kind's distinct digests, sorted: ``(high, bucket)`` per bucket in order, where
        ``high`` is the bucket's first leading byte past its end. ``within``: only the
        leading bytes ``[low, high)`` (a split run's job), buckets cut at its ends."""
        count = digestsets.bucket_count(self._read[schema], BUCKET_TARGET)
        for bucket in range(count):
            low, high = digestsets.bounds(bucket, count)
            low, high = max(low, within[0]), min(high, within[1])
            if low < high:
                yield high, self.between(schema, low, high)

    def between(self, schema: str, low: int, high: int) -> bytes:
        """The kind's distinct digests whose leading byte is in ``[low, high)``, sorted: its
        pieces of every spilled run and of what is still held, merged."""
        parts = self.pieces(schema, low, high)
        return parts[0] if len(parts) == 1 else digestsets.sorted_distinct(parts)

    def pieces(self, schema: str, low: int, high: int) -> list[bytes]:
        """The same digests unmerged: one sorted, distinct piece from each spilled run and
        one from what is still held (a digest may be in several)."""
        self.settle()
        if schema not in self._kept:  # what is still held, sorted (and no longer held)
            self._kept[schema] = digestsets.SortedFrames(self._held[schema])
            self._held_bytes -= len(self._held[schema])
            self._held[schema] = bytearray()
        kept = self._kept[schema]
        spilled = self._runs[schema]
        reads = [_READERS.submit(store.read, run, low, high) for store, run in spilled]
        parts = [read.result() for read in reads]
        parts.append(b"".join(kept.frame(leading) for leading in range(low, high)))
        return parts

    @property
    def spilled_bytes(self) -> int:
        return self._spill.bytes_written
