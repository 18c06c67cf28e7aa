"""Normalisation and hashing: Snap's known answers and the stream helpers."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

import pyarrow as pa
import pytest

from shared.core import identifiers
from shared.core.identifiers import Rejection, Tally

KNOWN = [
    ("test@abc.com", "d3142c8f9c9129484daf28df80cc5c955791efed5e69afabb603bc8cb9ffd419"),
    ("Person@email.com ", "b375b7bbddb3de3298fbc7641063d9f03a38e118aa4480c8ab9f58740982e8bd"),
]

EMAIL = identifiers.IdentifierType.EMAIL
PHONE = identifiers.IdentifierType.PHONE
MAID = identifiers.IdentifierType.MOBILE_AD_ID
EMPTY, INVALID = Rejection.EMPTY, Rejection.INVALID
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"

# Every kind's rules in one table: (kind, cell, default_country_code, what Snapchat hashes).
KNOWN_ANSWERS: list[tuple[identifiers.IdentifierType, str, str | None, str | Rejection]] = [
    # email: trimmed, lowercased, and only if it fits the documented grammar
    (EMAIL, "test@abc.com", None, "test@abc.com"),
    (EMAIL, "  Mixed.Case@Example.COM\t", None, "mixed.case@example.com"),
    (EMAIL, "first.last+tag@sub.example.co.uk", None, "first.last+tag@sub.example.co.uk"),
    (EMAIL, "O'Neil_x@Example.com", None, "o'neil_x@example.com"),
    (EMAIL, "ÜSER@exämple.de", None, "üser@exämple.de"),
    (EMAIL, "a@xn--mnchen-3ya.de", None, "a@xn--mnchen-3ya.de"),
    (EMAIL, "user@भारत.भारत", None, "user@भारत.भारत"),  # vowel signs are marks
    (EMAIL, "jose\u0301@example.com", None, "jose\u0301@example.com"),  # a combining accent
    (EMAIL, "x\u2009y@example.com", None, INVALID),  # a thin space
    (EMAIL, "a\u00d7b@example.com", None, INVALID),  # a multiplication sign (a symbol)
    (EMAIL, "a\u200bb@example.com", None, INVALID),  # a zero-width space (format character)
    (EMAIL, "x" * 64 + "@example.com", None, "x" * 64 + "@example.com"),
    (EMAIL, "", None, EMPTY),
    (EMAIL, "   ", None, EMPTY),
    (EMAIL, "\t\n", None, EMPTY),
    (EMAIL, "not-an-email", None, INVALID),
    (EMAIL, "someone@", None, INVALID),
    (EMAIL, "@example.com", None, INVALID),
    (EMAIL, "a@b", None, INVALID),
    (EMAIL, "two@@example.com", None, INVALID),
    (EMAIL, "x y@z.com", None, INVALID),
    (EMAIL, "dot@end.", None, INVALID),
    (EMAIL, "dot@.start", None, INVALID),
    (EMAIL, "a..b@example.com", None, INVALID),
    (EMAIL, ".a@example.com", None, INVALID),
    (EMAIL, "a.@example.com", None, INVALID),
    (EMAIL, "a@-x.com", None, INVALID),
    (EMAIL, "a@x_y.com", None, INVALID),
    (EMAIL, "a@1.2.3.4", None, INVALID),
    (EMAIL, "a@[192.0.2.1]", None, INVALID),
    (EMAIL, '"quoted"@example.com', None, INVALID),
    (EMAIL, "x" * 65 + "@example.com", None, INVALID),
    # the local part's limit counts characters, also where they take two bytes each
    (EMAIL, "\u00e9" * 64 + "@example.com", None, "\u00e9" * 64 + "@example.com"),
    (EMAIL, "\u00e9" * 65 + "@example.com", None, INVALID),
    # only an all-digit last label is refused; a digit at the end is fine
    (EMAIL, "a@example.123", None, INVALID),
    (EMAIL, "a@example.a1", None, "a@example.a1"),
    (EMAIL, "a@9.example.com", None, "a@9.example.com"),
    # 254 characters in all is the limit (the domain's own, 253, is then always met)
    (EMAIL, "a@" + ("b" * 61 + ".") * 4 + "bbbb", None, "a@" + ("b" * 61 + ".") * 4 + "bbbb"),
    (EMAIL, "a@" + ("b" * 61 + ".") * 4 + "bbbbb", None, INVALID),
    (EMAIL, "a@" + "b" * 250 + ".com", None, INVALID),
    (EMAIL, "nbsp\u00a0x@example.com", None, INVALID),
    (EMAIL, '=HYPERLINK("mailto:ann@example.com","ann@example.com")', None, INVALID),
    (EMAIL, "mailto:ann@example.com", None, INVALID),
    (EMAIL, "<ann@example.com>", None, INVALID),
    (EMAIL, "Ann <ann@example.com>", None, INVALID),
    (EMAIL, "<b>ann@example.com</b>", None, INVALID),
    # phone: digits with the country code
    (PHONE, "+44 (0)20 7946 0958", None, "442079460958"),
    (PHONE, "0044 20 7946 0958", None, "442079460958"),
    (PHONE, "+0049 30 901820", None, "4930901820"),
    (PHONE, "+00 44 20 7946 0958", "44", "442079460958"),
    (PHONE, "020 7946 0958", "44", "442079460958"),
    (PHONE, "+39 06 6982 1234", "44", "390669821234"),  # Italian numbers keep their 0
    (PHONE, "+1 (202) 555-0143", None, "12025550143"),
    (PHONE, "202.555.0143", "1", "12025550143"),
    (PHONE, "1-202-555-0143", "1", "12025550143"),
    (PHONE, "+33 6 12 34 56 78", "44", "33612345678"),
    (PHONE, "06 12 34 56 78", "33", "33612345678"),
    (PHONE, "  +49 30 1234567  ", None, "49301234567"),
    (PHONE, "+44 20 7946 0958", None, "442079460958"),
    (PHONE, "020 7946 0958", None, INVALID),  # national, and no default country code
    # phone: the default country's own dialling rules (libphonenumber's metadata)
    (PHONE, "01(706)-767-5127", "1", "17067675127"),  # a stray 0: the US trunk prefix is 1
    (PHONE, "0 202 555 0143", "1", "12025550143"),
    (PHONE, "011 44 20 7946 0958", "1", "442079460958"),  # the US exit code
    (PHONE, "00 44 20 7946 0958", "1", "442079460958"),  # 00, read everywhere
    (PHONE, "06 6982 0000", "39", "390669820000"),  # Italy has no trunk prefix
    (PHONE, "8 (912) 345-67-89", "7", "79123456789"),  # Russia's trunk prefix is 8
    (PHONE, "810 44 20 7946 0958", "7", "442079460958"),  # and its exit code 810
    (PHONE, "0011 44 20 7946 0958", "61", "442079460958"),  # Australia's exit code
    (PHONE, "(02) 9374 4000", "61", "61293744000"),
    (PHONE, "010 44 20 7946 0958", "81", "442079460958"),  # Japan's exit code
    (PHONE, "03-1234-5678", "81", "81312345678"),
    (PHONE, "06 30 123 4567", "36", "36301234567"),  # Hungary's trunk prefix is 06
    (PHONE, "0", "1", INVALID),
    (PHONE, "1234", "44", INVALID),
    (PHONE, "+44 20 7946 0958 ext 12", "44", INVALID),
    (PHONE, "call me", "44", INVALID),
    (PHONE, "+1234567890123456", "44", INVALID),
    (PHONE, "٠١٢٣٤٥٦٧٨٩", "44", INVALID),
    (PHONE, "", "44", EMPTY),
    # mobile ad ID: lowercased, hyphens kept
    (MAID, f" {IDFA} ", None, IDFA.lower()),
    (MAID, "00000000-0000-0000-0000-000000000000", None, INVALID),
    (MAID, "6D92078A82464BA4AE5B76104861E7DC", None, INVALID),
    (MAID, "not-an-id", None, INVALID),
    (MAID, "6d92078a-8246-4ba4-ae5b-76104861e7dz", None, INVALID),
]


@pytest.mark.parametrize(("raw", "expected"), KNOWN)
def test_known_answers_from_the_reference(raw: str, expected: str) -> None:
    digest = identifiers.email_digest(raw)
    assert isinstance(digest, bytes)
    assert digest.hex() == expected


@pytest.mark.parametrize(("kind", "raw", "country", "expected"), KNOWN_ANSWERS)
def test_known_answers_for_every_kind(
    kind: identifiers.IdentifierType, raw: str, country: str | None, expected: str | Rejection
) -> None:
    assert identifiers.normalise(kind, raw, country) == expected
    digest = identifiers.digest(kind, raw, country)
    if isinstance(expected, Rejection):
        assert digest is expected
    else:
        assert digest == hashlib.sha256(expected.encode()).digest()
    # the export loop applies exactly the same rule, in a column with other cells
    tally = Tally()
    column = pa.array(["", raw, "   "], pa.string())
    found = identifiers.digest_column(kind, column, tally, country)
    assert found == (b"" if isinstance(expected, Rejection) else digest)
    assert (tally.rows, tally.empty, tally.invalid) == (
        3, 2 + (expected is EMPTY), int(expected is INVALID),
    )  # fmt: skip


def test_lowercasing_is_unicodes_simple_case_mapping() -> None:
    # Arrow's kernels map one character to one: the dotted capital I and a final sigma
    # lowercase as they do on their own, not as Python's str.lower would.
    assert identifiers.normalise(EMAIL, "\u0130NCI@example.com") == "inci@example.com"
    assert identifiers.normalise(EMAIL, "\u039f\u03a3@example.gr") == "\u03bf\u03c3@example.gr"


def test_a_value_that_is_already_a_hash_is_passed_through_not_hashed_again() -> None:
    upstream = KNOWN[0][1]
    assert identifiers.email_digest(upstream.upper()) == bytes.fromhex(upstream)
    assert identifiers.email_digest(f"  {upstream} ") == bytes.fromhex(upstream)
    # 63 or 65 hex characters are not hashes: they are invalid addresses
    assert identifiers.email_digest(upstream[:-1]) is Rejection.INVALID


def test_the_column_loop_agrees_with_the_single_value_rules_and_counts() -> None:
    cells = [
        "a@example.com", "", "bad", KNOWN[0][1], "B@Example.com", "  ", "A@EXAMPLE.COM",
        KNOWN[0][1].upper(), "tab\t@example.com", "x@y.z", "nbsp\u00a0x@example.com",
    ]  # fmt: skip
    tally = Tally()
    got = identifiers.digest_column(EMAIL, pa.array(cells), tally)
    singles = [identifiers.email_digest(c) for c in cells]
    valid = [d for d in singles if isinstance(d, bytes)]
    assert sorted(got[i : i + 32] for i in range(0, len(got), 32)) == sorted(valid)
    assert (tally.rows, tally.empty, tally.invalid, tally.prehashed) == (11, 2, 3, 2)


def test_a_column_split_in_chunks_gives_the_same_digests() -> None:
    cells = [f"Person{i}@Example.com" for i in range(1000)]
    whole = identifiers.digest_column(EMAIL, pa.array(cells), Tally())
    chunked = pa.chunked_array([pa.array(cells[:300]), pa.array(cells[300:])])
    assert identifiers.digest_column(EMAIL, chunked, Tally()) == whole
    assert whole == b"".join(hashlib.sha256(c.lower().encode()).digest() for c in cells)


PHONE_CASES = [
    (prefix + number, code)
    for code in (None, "1", "44", "39", "7", "61", "81", "36", "33", "55", "999")
    for prefix in ("", "+", "0", "00", "000", "1", "8", "810", "011", "0011", "010", "06", "+00")
    for number in ("2079460958", "7067675127", "1 706 767 5127", "44 20 7946 0958", "123")
] + [(raw, country) for kind, raw, country, _ in KNOWN_ANSWERS if kind is PHONE]


def _dialled(raw: str, country: str | None, dial: Callable[..., str | None]) -> str | None:
    """The reference: libphonenumber's rules (``dial``) on one value, and the length."""
    value = raw.strip().replace("(0)", "")
    digits = re.sub(r"[ \-.()/\t]", "", value.lstrip("+"))
    if not re.fullmatch(r"[0-9]+", digits):
        return None
    found = dial(digits, country, plus=value.startswith("+"))
    return found if found is not None and 7 <= len(found) <= 15 else None


def test_the_fast_phone_path_and_the_library_never_disagree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raws = pa.array([raw for raw, _ in PHONE_CASES])
    handed: list[tuple[str, str | None]] = []
    real = identifiers.dial

    def counted(digits: str, code: str | None, *, plus: bool = False) -> str | None:
        handed.append((digits, code))
        return real(digits, code, plus=plus)

    monkeypatch.setattr(identifiers, "dial", counted)
    disagree = []
    for raw, country in PHONE_CASES:
        column = identifiers.normalise_column(PHONE, pa.array([raw.strip()]), country)[0].as_py()
        if column != _dialled(raw, country, real):
            disagree.append((raw, country, column, _dialled(raw, country, real)))
    assert disagree == []
    assert len(raws) > 500
    # the library decides only the few the kernels cannot: another exit code, a stray 0
    library = {(d, c) for d, c in handed if c is not None}
    assert ("0114420794609580"[:-1], "1") in library  # 011 44 20 7946 0958
    assert ("2079460958", "1") not in library
    assert not any(c == "44" for _, c in library)  # the UK's 0 and 00 are the kernels' own
    assert 0 < len(library) < len(PHONE_CASES) // 4


@pytest.mark.parametrize("count", [1, 2, 4095, 4096, 4097, 10_000])
def test_users_body_length_is_exact_across_piece_boundaries(count: int) -> None:
    batch = [hashlib.sha256(str(i).encode()).digest() for i in range(count)]
    body = identifiers.UsersBody("PHONE_SHA256", b"".join(batch))
    written = bytes(body)
    assert len(body) == len(written)
    assert bytes(body) == written  # a retry writes the same bytes again
    parsed = json.loads(written)["users"][0]
    assert parsed["schema"] == ["PHONE_SHA256"]
    assert parsed["data"] == [[d.hex()] for d in batch]


def test_users_body_is_the_documented_shape() -> None:
    batch = [hashlib.sha256(b"x").digest(), hashlib.sha256(b"y").digest()]
    body = json.loads(bytes(identifiers.UsersBody("EMAIL_SHA256", b"".join(batch))))
    assert body == {
        "users": [
            {
                "schema": ["EMAIL_SHA256"],
                "data": [[hashlib.sha256(b"x").hexdigest()], [hashlib.sha256(b"y").hexdigest()]],
            }
        ]
    }
