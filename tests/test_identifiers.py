"""Normalisation and hashing: Snap's known answers and the stream helpers."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared import identifiers
from shared.identifiers import Rejection, Tally

KNOWN = [
    ("test@abc.com", "d3142c8f9c9129484daf28df80cc5c955791efed5e69afabb603bc8cb9ffd419"),
    ("Person@email.com ", "b375b7bbddb3de3298fbc7641063d9f03a38e118aa4480c8ab9f58740982e8bd"),
]


@pytest.mark.parametrize(("raw", "expected"), KNOWN)
def test_known_answers_from_the_reference(raw: str, expected: str) -> None:
    digest = identifiers.email_digest(raw)
    assert isinstance(digest, bytes)
    assert digest.hex() == expected


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("  Mixed.Case@Example.COM\t", "mixed.case@example.com"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("ÜSER@exämple.de", "üser@exämple.de"),
    ],
)
def test_emails_are_trimmed_and_lowercased_before_hashing(raw: str, normalised: str) -> None:
    assert identifiers.normalise_email(raw) == normalised
    assert identifiers.email_digest(raw) == hashlib.sha256(normalised.encode()).digest()


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_blank_cells_are_empty(raw: str) -> None:
    assert identifiers.email_digest(raw) is Rejection.EMPTY


@pytest.mark.parametrize(
    "raw",
    [
        "not-an-email",
        "someone@",
        "@example.com",
        "a@b",
        "two@@example.com",
        "x y@z.com",
        "dot@end.",
        "dot@.start",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_implausible_addresses_are_invalid(raw: str) -> None:
    assert identifiers.email_digest(raw) is Rejection.INVALID


def test_a_value_that_is_already_a_hash_is_passed_through_not_hashed_again() -> None:
    upstream = KNOWN[0][1]
    assert identifiers.email_digest(upstream.upper()) == bytes.fromhex(upstream)
    assert identifiers.email_digest(f"  {upstream} ") == bytes.fromhex(upstream)
    # 63 or 65 hex characters are not hashes: they are invalid addresses
    assert identifiers.email_digest(upstream[:-1]) is Rejection.INVALID


def test_stream_form_agrees_with_the_single_value_form_and_counts() -> None:
    cells = ["a@example.com", "", "bad", KNOWN[0][1], "B@Example.com", "  ", "A@EXAMPLE.COM"]
    tally = Tally()
    got = list(identifiers.email_digests(cells, tally))
    expected = [d for d in map(identifiers.email_digest, cells) if isinstance(d, bytes)]
    assert got == expected
    assert (tally.rows, tally.empty, tally.invalid, tally.prehashed) == (7, 2, 1, 1)


def test_unique_keeps_first_occurrences_in_order_and_counts_repeats() -> None:
    tally = Tally()
    digests = [b"a" * 32, b"b" * 32, b"a" * 32, b"c" * 32, b"b" * 32]
    assert list(identifiers.unique(digests, tally)) == [b"a" * 32, b"b" * 32, b"c" * 32]
    assert tally.duplicates == 2


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [(0, 3, []), (3, 3, [3]), (7, 3, [3, 3, 1]), (200_001, 100_000, [100_000, 100_000, 1])],
)
def test_batches_split_at_the_size(count: int, size: int, expected: list[int]) -> None:
    digests = (i.to_bytes(32, "big") for i in range(count))
    assert [len(b) for b in identifiers.batches(digests, size)] == expected


def test_users_body_is_the_documented_shape() -> None:
    batch = [hashlib.sha256(b"x").digest(), hashlib.sha256(b"y").digest()]
    body = json.loads(identifiers.users_body("EMAIL_SHA256", batch))
    assert body == {
        "users": [
            {
                "schema": ["EMAIL_SHA256"],
                "data": [[hashlib.sha256(b"x").hexdigest()], [hashlib.sha256(b"y").hexdigest()]],
            }
        ]
    }
