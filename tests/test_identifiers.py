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


EMAIL = identifiers.IdentifierType.EMAIL


def test_the_export_loop_agrees_with_the_single_value_rules_and_counts() -> None:
    cells = [
        "a@example.com", "", "bad", KNOWN[0][1], "B@Example.com", "  ", "A@EXAMPLE.COM",
        KNOWN[0][1].upper(), "tab\t@example.com", "x@y.z", "nbsp\u00a0x@example.com",
    ]  # fmt: skip
    tally = Tally()
    got = [
        d
        for batch in identifiers.digest_batches(cells, identifiers.normaliser(EMAIL), 100, tally)
        for d in batch
    ]
    singles = [identifiers.email_digest(c) for c in cells]
    expected = list(dict.fromkeys(d for d in singles if isinstance(d, bytes)))
    assert got == expected
    assert (tally.rows, tally.empty, tally.invalid, tally.prehashed, tally.duplicates) == (
        11, 2, 3, 2, 2,
    )  # fmt: skip


def test_batches_keep_first_occurrences_in_order() -> None:
    cells = ["a@x.com", "b@x.com", "A@x.com", "c@x.com", " b@X.COM", "d@x.com"]
    got = list(identifiers.digest_batches(cells, identifiers.normaliser(EMAIL), 2, Tally()))
    hashed = [identifiers.email_digest(c) for c in ("a@x.com", "b@x.com", "c@x.com", "d@x.com")]
    assert got == [hashed[:2], hashed[2:]]


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [(0, 3, []), (3, 3, [3]), (7, 3, [3, 3, 1]), (200_001, 100_000, [100_000, 100_000, 1])],
)
def test_batches_split_at_the_size(count: int, size: int, expected: list[int]) -> None:
    cells = (f"person{i}@example.com" for i in range(count))
    batches = identifiers.digest_batches(cells, identifiers.normaliser(EMAIL), size, Tally())
    assert [len(b) for b in batches] == expected


@pytest.mark.parametrize("count", [1, 2, 4095, 4096, 4097, 10_000])
def test_users_body_length_is_exact_across_piece_boundaries(count: int) -> None:
    batch = [hashlib.sha256(str(i).encode()).digest() for i in range(count)]
    body = identifiers.UsersBody("PHONE_SHA256", batch)
    written = bytes(body)
    assert len(body) == len(written)
    assert bytes(body) == written  # a retry writes the same bytes again
    parsed = json.loads(written)["users"][0]
    assert parsed["schema"] == ["PHONE_SHA256"]
    assert parsed["data"] == [[d.hex()] for d in batch]


def test_users_body_is_the_documented_shape() -> None:
    batch = [hashlib.sha256(b"x").digest(), hashlib.sha256(b"y").digest()]
    body = json.loads(bytes(identifiers.UsersBody("EMAIL_SHA256", batch)))
    assert body == {
        "users": [
            {
                "schema": ["EMAIL_SHA256"],
                "data": [[hashlib.sha256(b"x").hexdigest()], [hashlib.sha256(b"y").hexdigest()]],
            }
        ]
    }


PHONE = identifiers.IdentifierType.PHONE


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+44 (0)20 7946 0958", None, "442079460958"),
        ("0044 20 7946 0958", None, "442079460958"),
        ("020 7946 0958", "44", "442079460958"),
        ("+39 06 6982 1234", "44", "390669821234"),  # Italian numbers keep their 0
        ("+1 (202) 555-0143", None, "12025550143"),
        ("202.555.0143", "1", "12025550143"),
        ("1-202-555-0143", "1", "12025550143"),
        ("+33 6 12 34 56 78", "44", "33612345678"),
        ("06 12 34 56 78", "33", "33612345678"),
        ("  +49 30 1234567  ", None, "49301234567"),
    ],
)
def test_phone_numbers_follow_snaps_rules(raw: str, country: str | None, expected: str) -> None:
    assert identifiers.normalise(PHONE, raw, country) == expected
    digest = identifiers.digest(PHONE, raw, country)
    assert digest == hashlib.sha256(expected.encode()).digest()


@pytest.mark.parametrize(
    "raw", ["1234", "+44 20 7946 0958 ext 12", "call me", "+1234567890123456", "٠١٢٣٤٥٦٧٨٩"]
)
def test_implausible_phone_numbers_are_invalid(raw: str) -> None:
    assert identifiers.normalise(PHONE, raw, "44") is Rejection.INVALID


def test_a_national_number_without_a_default_country_code_is_invalid() -> None:
    assert identifiers.normalise(PHONE, "020 7946 0958") is Rejection.INVALID
    assert identifiers.normalise(PHONE, "+44 20 7946 0958") == "442079460958"


MAID = identifiers.IdentifierType.MOBILE_AD_ID


def test_mobile_ad_ids_are_lowercased_with_hyphens_kept() -> None:
    idfa = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
    assert identifiers.normalise(MAID, f" {idfa} ") == idfa.lower()
    assert identifiers.digest(MAID, idfa) == hashlib.sha256(idfa.lower().encode()).digest()


@pytest.mark.parametrize(
    "raw",
    [
        "00000000-0000-0000-0000-000000000000",
        "6D92078A82464BA4AE5B76104861E7DC",
        "not-an-id",
        "6d92078a-8246-4ba4-ae5b-76104861e7dz",
    ],
)
def test_malformed_or_zero_mobile_ad_ids_are_invalid(raw: str) -> None:
    assert identifiers.normalise(MAID, raw) is Rejection.INVALID
