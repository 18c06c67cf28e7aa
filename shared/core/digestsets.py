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


def _first_words(digests: np.ndarray) -> np.ndarray:
    """Each digest's first 8 bytes as a number: their order is the digests' order, but for
    digests that share those bytes."""
    firsts: np.ndarray = digests.view(">u8")[:: DIGEST // 8].astype(np.uint64)
    return firsts


def _words(digests: np.ndarray) -> np.ndarray:
    """Each digest as four 64-bit words (for equality only: their order is not the digests')."""
    words: np.ndarray = digests.view(np.uint64).reshape(-1, DIGEST // 8)
    return words


def _sorted(digests: np.ndarray) -> np.ndarray:
    """A sorted copy of ``digests``. NumPy compares 32-byte values one call at a time, so
    the sort runs on numbers instead: each digest's leading bits with its index in the low
    bits, sorted as 64-bit integers, give the order; digests whose leading bits are the
    same (repeats, and for random digests about n^2 / 2^65-log2(n) pairs of others: almost
    never any) are put right afterwards."""
    size = len(digests)
    if size < 2:
        return digests.copy()
    shift = np.uint64(int(size - 1).bit_length())
    packed = _first_words(digests)  # made in place into leading bits | index
    packed >>= shift
    packed <<= shift
    packed |= np.arange(size, dtype=np.uint64)
    packed.sort()
    order = packed & ((np.uint64(1) << shift) - np.uint64(1))
    result: np.ndarray = digests[order]
    del order
    packed >>= shift  # the leading bits alone, in the new order
    words = _words(result)
    same = np.flatnonzero(packed[1:] == packed[:-1])  # repeats, mostly
    tied = same[np.any(words[same + 1] != words[same], axis=1)]
    sorted_until = -1
    for at in tied:  # other digests with the same leading bits: each such run sorted once
        if at <= sorted_until:
            continue
        start = int(np.searchsorted(packed, packed[at], side="left"))
        end = int(np.searchsorted(packed, packed[at], side="right"))
        result[start:end].sort()
        sorted_until = end - 1
    return result


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """Which of sorted ``ordered`` to keep so that each digest appears once."""
    keep = np.empty(len(ordered), dtype=bool)
    if len(ordered):
        keep[0] = True
        words = _words(ordered)
        np.any(words[1:] != words[:-1], axis=1, out=keep[1:])
    return keep


def sorted_distinct(parts: Iterable[bytes | bytearray]) -> bytes:
    """The distinct digests of ``parts`` (concatenated digests, in any order), sorted."""
    joined = bytearray().join(parts)
    if not joined:
        return b""
    ordered = _sorted(_array(joined))
    del joined
    result: bytes = ordered[_distinct(ordered)].tobytes()
    return result


class SortedFrames:
    """A buffer of digests sorted, handed out distinct, one leading byte at a time (what a
    spill writes). It holds a sorted copy of the buffer, not the buffer itself: the caller
    may drop that (sorting needs the copy and 16 bytes a digest more for a moment)."""

    def __init__(self, buffer: bytearray) -> None:
        self._digests = _sorted(_array(buffer))
        self._keep = _distinct(self._digests)
        firsts = self._digests.view(np.uint8)[::DIGEST]
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
    wanted = _array(data)
    result: bytes = wanted[~_contains(_array(other), wanted)].tobytes()
    return result


def _contains(ordered: np.ndarray, digests: np.ndarray) -> np.ndarray:
    """Which of ``digests`` are in the sorted set ``ordered``: looked up by their first
    words (binary search on numbers), then compared whole."""
    keys, wanted = _first_words(ordered), _first_words(digests)
    low = np.searchsorted(keys, wanted, side="left")
    high = np.searchsorted(keys, wanted, side="right")
    found = np.zeros(len(digests), dtype=bool)
    single = np.flatnonzero(high - low == 1)
    known, asked = _words(ordered), _words(digests)
    found[single] = np.all(known[low[single]] == asked[single], axis=1)
    shared = np.flatnonzero(high - low > 1)  # several digests share the first word: rare
    if len(shared):  # looked up whole (NumPy compares 32-byte values as memcmp does)
        place = np.minimum(np.searchsorted(ordered, digests[shared]), len(ordered) - 1)
        found[shared] = np.all(known[place] == asked[shared], axis=1)
    return found


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
