"""Memory does not grow with a partition's size: Arrow reads only a few blocks ahead.

Arrow's streaming CSV reader reads up to 32 blocks (64 MiB) ahead of the batches taken from
it, so a run's memory grew with its partitions' size (a 5M export in 4 partitions peaked over
400 MB where 16 partitions stayed under). ``column_blocks`` paces it; these tests count what
it has read from the partition while the batches wait, without timing anything.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Generator
from datetime import UTC, datetime

import pytest

from benchmarks.latency import tick_wait_seconds
from shared.core import csvstream

ROW = b'"someone@example.com","' + b"x" * 200 + b'"\r\n'


class _Counted(io.RawIOBase):
    """A partition in memory that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.read_bytes = 0
        self.lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = self._data.readinto(buffer)
        with self.lock:
            self.read_bytes += size
        return size


def _settled(read: Callable[[], int]) -> int:
    """What has been read once the reading stopped growing (the reader waits or is done)."""
    last = -1
    while (now := read()) != last:
        last = now
        time.sleep(0.3)
    return now


def test_a_large_partition_is_read_only_a_few_blocks_ahead_of_its_batches() -> None:
    blocks = 48  # past Arrow's own read-ahead of 32 blocks
    partition = _Counted(b'"EMail","Note"\r\n' + ROW * (blocks * csvstream._BLOCK // len(ROW)))
    batches = csvstream.column_blocks(["p.csv"], lambda _: partition, columns=["EMail"], model=None)
    rows = len(next(batches)[1][0])  # one batch taken; the next ones wait
    ahead = _settled(lambda: partition.read_bytes)
    # The reader's own buffer, the block it parses and _AHEAD (4) more, at most: 16 MiB where
    # Arrow alone reads 64 MiB ahead.
    assert ahead <= 8 * csvstream._BLOCK
    rows += sum(len(cells[0]) for _, cells in batches)  # and the rest is all there
    assert rows == blocks * csvstream._BLOCK // len(ROW)


def test_a_partition_left_half_read_lets_the_reading_thread_go() -> None:
    partition = _Counted(b'"EMail"\r\n' + b'"a@example.com"\r\n' * (1 << 22))
    batches = csvstream.column_blocks(["p.csv"], lambda _: partition, columns=["EMail"], model=None)
    next(batches)
    assert isinstance(batches, Generator)
    batches.close()  # the reader closes: its reading thread, held back, must not hang it


@pytest.mark.parametrize(
    ("schedule", "mean", "longest"),
    [("0 */15 * * * *", 450.0, 900.0), ("0 0,10 * * * *", 1300.0, 3000.0)],
)
def test_the_wait_for_the_timer_is_taken_from_its_schedule(
    schedule: str, mean: float, longest: float
) -> None:
    assert tick_wait_seconds(schedule, datetime(2026, 1, 1, 0, 7, tzinfo=UTC)) == (mean, longest)
