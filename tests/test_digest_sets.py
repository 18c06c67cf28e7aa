"""Digest sets and the first-seen filter, against plain Python sets and sorts (fast tier)."""

from __future__ import annotations

import os
import random

import pyarrow as pa
import pytest

from shared.core import digestsets, identifiers
from shared.core.first_seen import GROUP, FirstSeen

D = digestsets.DIGEST


def split(data: bytes) -> list[bytes]:
    return [data[i : i + D] for i in range(0, len(data), D)]


def awkward_digests(count: int, seed: int) -> list[bytes]:
    """Random digests, some sharing their first 8 bytes (which the sort looks at first),
    some repeated, some all zero or all 0xff."""
    rng = random.Random(seed)
    found = [rng.randbytes(D) for _ in range(count)]
    for i in range(0, count - 4, 7):
        found[i + 1] = found[i][:8] + rng.randbytes(D - 8)  # same leading word, not equal
        found[i + 2] = found[i]  # a repeat
    return [*found, bytes(D), b"\xff" * D, bytes(D)]


@pytest.mark.parametrize("seed", range(5))
def test_sorted_distinct_is_memcmp_order_without_repeats(seed: int) -> None:
    found = awkward_digests(3000, seed)
    random.Random(seed).shuffle(found)
    half = len(found) // 2
    result = digestsets.sorted_distinct([b"".join(found[:half]), b"".join(found[half:])])
    assert split(result) == sorted(set(found))


def test_sorted_frames_hand_out_each_leading_byte_sorted_and_distinct() -> None:
    found = awkward_digests(2000, 9)
    frames = digestsets.SortedFrames(bytearray(b"".join(found)))
    got = [frames.frame(leading) for leading in range(digestsets.LEADING_BYTES)]
    assert [len(g) for g in got] == frames.sizes
    assert split(b"".join(got)) == sorted(set(found))


@pytest.mark.parametrize("seed", range(3))
def test_minus_is_set_difference(seed: int) -> None:
    found = sorted(set(awkward_digests(2000, seed)))
    rng = random.Random(seed)
    other = sorted(set(rng.sample(found, 700)) | {rng.randbytes(D) for _ in range(50)})
    result = digestsets.minus(b"".join(found), b"".join(other))
    assert split(result) == sorted(set(found) - set(other))


def judged(stream: bytes, pieces: list[int], bits: int) -> tuple[bytes, bytes]:
    seen, firsts, agains, at = FirstSeen(bits), [], [], 0
    for size in pieces:
        first, again = seen.add(stream[at : at + size * D])
        firsts.append(first)
        agains.append(again)
        at += size * D
    first, again = seen.add(stream[at:])
    firsts.append(first)
    agains.append(again)
    first, again = seen.finish()
    return b"".join([*firsts, first]), b"".join([*agains, again])


@pytest.mark.parametrize("bits", [1 << 27, 1 << 12, 64], ids=["roomy", "crowded", "full"])
def test_first_seen_never_calls_a_repeat_first_and_keeps_stream_order(bits: int) -> None:
    rng = random.Random(bits)
    distinct = [rng.randbytes(D) for _ in range(GROUP + 5000)]
    stream = [*distinct, *rng.choices(distinct, k=20000)]
    rng.shuffle(stream)
    first, again = judged(b"".join(stream), [1000, GROUP, 77], bits)
    firsts = split(first)
    assert len(set(firsts)) == len(firsts)  # no digest first twice
    assert sorted(firsts + split(again)) == sorted(stream)  # each digest judged once
    order = {d: i for i, d in reversed(list(enumerate(stream)))}  # first occurrence
    assert [order[d] for d in firsts] == sorted(order[d] for d in firsts)
    assert all(stream[order[d]] == d for d in firsts)
    if bits == 1 << 27:
        assert len(firsts) > 0.99 * len(distinct)  # a roomy filter delays almost none


def test_first_seen_verdicts_do_not_depend_on_how_the_stream_is_cut() -> None:
    rng = random.Random(7)
    distinct = [rng.randbytes(D) for _ in range(3 * GROUP)]
    stream = b"".join([*distinct, *rng.choices(distinct, k=30000)])
    whole = judged(stream, [], 1 << 14)
    assert judged(stream, [1, 5000, GROUP - 3, 2 * GROUP, 9], 1 << 14) == whole
    assert judged(stream, [GROUP] * 3, 1 << 14) == whole


def test_digest_column_keeps_row_order_with_upstream_hashes_between() -> None:
    upstream = os.urandom(D).hex()
    cells = ["b@example.com", upstream, "", "not an email", "a@example.com", upstream.upper()]
    digests = identifiers.digest_column(
        identifiers.IdentifierType.EMAIL, pa.array(cells), identifiers.Tally()
    )
    expected = [identifiers.email_digest(c) for c in ("b@example.com", upstream,
                                                      "a@example.com", upstream)]  # fmt: skip
    assert split(digests) == expected


def test_many_digests_sharing_their_first_words_sort_and_subtract_right() -> None:
    # Upstream "hashes" may be any 64 hex characters, e.g. zero-padded numbers.
    rng = random.Random(5)
    padded = [bytes(24) + n.to_bytes(8, "big") for n in rng.sample(range(10**9), 5000)]
    mixed = padded + [rng.randbytes(D) for _ in range(2000)] + padded[:100]
    rng.shuffle(mixed)
    result = digestsets.sorted_distinct([b"".join(mixed)])
    assert split(result) == sorted(set(mixed))
    taken = set(rng.sample(sorted(set(mixed)), 3000))
    other = digestsets.sorted_distinct([b"".join(taken)])
    assert split(digestsets.minus(result, other)) == sorted(set(mixed) - taken)
