"""Sets of 32-byte digests held as one ``bytes`` each: sorted, distinct, cut by leading byte. Pure.

A set is the concatenation of its digests in ascending order (as ``memcmp`` orders them), so
that sorting and merging run in NumPy over the whole buffer, never digest by digest in
Python. Sets too large for memory are cut into ``buckets``: bucket ``b`` of ``n`` holds the
digests whose leading byte falls in ``bounds(b, n)``, and the buckets, in order, make the
whole sorted set. SHA-256 spreads digests evenly, so buckets are of about equal size.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np

DIGEST = 32
LEADING_BYTES = 256  # the finest cut: one bucket per leading byte


def _array(data: bytes | bytearray | memoryview) -> np.ndarray:
    if len(data) % DIGEST:
        raise ValueError(f"a digest set's length must be a multiple of {DIGEST} bytes")
    return np.frombuffer(data, dtype=f"V{DIGEST}")


def count(data: bytes) -> int:
    return len(data) // DIGEST


def sorted_distinct(parts: Iterable[bytes | bytearray]) -> bytes:
    """The distinct digests of ``parts`` (concatenated digests, in any order), sorted.
    Sorts one copy in place: memory is about twice the input's, then the result's."""
    joined = bytearray().join(parts)
    if not joined:
        return b""
    digests = _array(joined)
    digests.sort()
    words = digests.view(np.uint64).reshape(-1, DIGEST // 8)  # equality only: order is moot
    keep = np.empty(len(digests), dtype=bool)
    keep[0] = True
    np.any(words[1:] != words[:-1], axis=1, out=keep[1:])
    result: bytes = digests[keep].tobytes()
    return result


class SortedFrames:
    """A buffer of digests sorted in place, handed out distinct, one leading byte at a time,
    so that nothing of the buffer's size is copied (what a spill writes)."""

    def __init__(self, buffer: bytearray) -> None:
        self._digests = _array(buffer)  # a writable view: sorted in place
        self._digests.sort()
        words = self._digests.view(np.uint64).reshape(-1, DIGEST // 8)
        self._keep = np.empty(len(self._digests), dtype=bool)
        if len(self._digests):
            self._keep[0] = True
            np.any(words[1:] != words[:-1], axis=1, out=self._keep[1:])
        firsts = np.frombuffer(buffer, dtype=np.uint8)[::DIGEST]
        self._starts = np.searchsorted(firsts, np.arange(LEADING_BYTES + 1), side="left")
        kept = np.concatenate(([0], np.cumsum(self._keep, dtype=np.int64)))
        starts = self._starts
        self.sizes = [int(kept[b] - kept[a]) * DIGEST for a, b in itertools.pairwise(starts)]

    def frame(self, leading: int) -> bytes:
        """The distinct digests whose leading byte is ``leading``, sorted."""
        low, high = int(self._starts[leading]), int(self._starts[leading + 1])
        found: bytes = self._digests[low:high][self._keep[low:high]].tobytes()
        return found


def leading_offsets(data: bytes) -> list[int]:
    """For a sorted set: the byte offset where each leading byte's digests start (257
    offsets, the last one the set's length)."""
    firsts = np.frombuffer(data, dtype=np.uint8)[::DIGEST]
    starts = np.searchsorted(firsts, np.arange(LEADING_BYTES + 1), side="left")
    return [int(start) * DIGEST for start in starts]


def bucket_count(digests: int, target: int) -> int:
    """How many buckets (a power of two, at most 256) keep each near ``target`` digests."""
    buckets = 1
    while buckets < LEADING_BYTES and digests > buckets * target:
        buckets *= 2
    return buckets


def bounds(bucket: int, buckets: int) -> tuple[int, int]:
    """The leading bytes ``[low, high)`` of bucket ``bucket`` of ``buckets``."""
    width = LEADING_BYTES // buckets
    return bucket * width, (bucket + 1) * width


def union(*sets: bytes) -> bytes:
    return sorted_distinct(sets)


def minus(data: bytes, other: bytes) -> bytes:
    """The digests of sorted set ``data`` that are not in sorted set ``other``."""
    if not data or not other:
        return data
    result: bytes = np.setdiff1d(_array(data), _array(other), assume_unique=True).tobytes()
    return result


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of at most ``size`` digests."""
    step = size * DIGEST
    for start in range(0, len(data), step):
        yield data[start : start + step]


class SortedReader:
    """A sorted set that arrives in pieces (decrypted frames), taken out bucket by bucket."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._held = b""
        self._done = False

    def until(self, high: int) -> bytes:
        """The next digests whose leading byte is below ``high`` (ascending calls)."""
        taken: list[bytes] = []
        while True:
            if self._held:
                firsts = np.frombuffer(self._held, dtype=np.uint8)[::DIGEST]
                cut = int(np.searchsorted(firsts, high, side="left")) * DIGEST
                taken.append(self._held[:cut])
                self._held = self._held[cut:]
                if self._held:
                    return b"".join(taken)
            if self._done:
                return b"".join(taken)
            piece = next(self._pieces, None)
            if piece is None:
                self._done = True
            else:
                self._held = piece
