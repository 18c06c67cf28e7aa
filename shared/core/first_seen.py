"""Which digests of a stream appear for the first time, in fixed memory. Pure.

A blocked Bloom filter over the digests' own bits (SHA-256 output is uniform, so they need
no hashing again): a digest's first 64-bit word picks one 64-bit word of the filter, its
second word two bits in it; the digest sets them, and is looked up by them. A digest whose
bits are not all set was certainly never added: it is *first*. One whose bits are all set is
*again*: seen before, or a false positive of the filter; the caller settles those exactly
later (``shared.export.add``). So a verdict of *first* is never wrong, and
one of *again* only delays a digest.

Digests are judged in groups of ``GROUP``, counted from the start of the stream: each group
against the filter as it was before the group, and within the group by first occurrence. The
verdicts therefore depend only on the stream's digests and their order, never on the sizes of
the pieces it was handed over in (a resumed run must rebuild the same requests).

With the default 16 MiB filter and one kind, the share of new digests taken for repeats over
a whole read is, in theory, about 0.03% at 1 million distinct digests, 0.3% at 5 million and
2.7% at 20 million (by the end of the read, 0.07%, 0.7% and 7% of each new one); an export of
several kinds splits the filter between them. Past that the filter fills up and more of the
work moves to after the read, with the same result.
"""

from __future__ import annotations

import numpy as np

from shared.core.digestsets import DIGEST

BITS = 1 << 27  # 16 MiB of filter, for all kinds together
GROUP = 1 << 16  # digests judged together


class FirstSeen:
    def __init__(self, bits: int = BITS) -> None:
        if bits < 64 or bits & (bits - 1):
            raise ValueError("the filter's size must be a power of two of at least 64 bits")
        self._words = np.zeros(bits // 64, dtype=np.uint64)
        self._slots = np.uint64(bits // 64 - 1)
        self._held = bytearray()  # the stream's digests past the last whole group

    def add(self, digests: bytes) -> tuple[bytes, bytes]:
        """Take the stream's next digests; return the verdicts on every group now complete:
        ``(first, again)``, each the digests concatenated in stream order."""
        self._held += digests
        whole = len(self._held) // (GROUP * DIGEST) * GROUP * DIGEST
        if not whole:
            return b"", b""
        verdicts = self._judge_groups(memoryview(self._held)[:whole])
        del self._held[:whole]
        return verdicts

    def finish(self) -> tuple[bytes, bytes]:
        """The verdicts on the stream's last, incomplete group."""
        verdicts = self._judge_groups(memoryview(self._held))
        self._held = bytearray()
        return verdicts

    def _judge_groups(self, data: memoryview) -> tuple[bytes, bytes]:
        firsts, agains = [], []
        with data:
            for start in range(0, len(data), GROUP * DIGEST):
                first, again = self._judge(data[start : start + GROUP * DIGEST])
                firsts.append(first)
                agains.append(again)
        return b"".join(firsts), b"".join(agains)

    def _judge(self, group: memoryview) -> tuple[bytes, bytes]:
        digests = np.frombuffer(group, dtype=f"V{DIGEST}")
        if not len(digests):
            return b"", b""
        words = digests.view(np.uint64).reshape(-1, DIGEST // 8)
        slots = words[:, 0] & self._slots
        six = np.uint64(63)
        one = np.uint64(1)
        bits = (one << (words[:, 1] & six)) | (one << ((words[:, 1] >> np.uint64(6)) & six))
        new = (self._words[slots] & bits) != bits
        # Within the group, only a digest's first occurrence can be first (two digests that
        # share their first word count as the same here: the later one is merely delayed).
        candidates = np.flatnonzero(new)
        keys = words[candidates, 0]
        ordered = np.sort(keys)
        if np.any(ordered[1:] == ordered[:-1]):
            order = np.argsort(keys, kind="stable")  # equal keys keep their stream order
            repeats = order[1:][keys[order[1:]] == keys[order[:-1]]]
            new[candidates[repeats]] = False
        np.bitwise_or.at(self._words, slots[new], bits[new])
        first: bytes = digests[new].tobytes()
        again: bytes = digests[~new].tobytes()
        return first, again
