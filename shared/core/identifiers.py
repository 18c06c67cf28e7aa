"""Normalising and hashing identifiers: the one place Snapchat's matching rules live.

Pure functions, no I/O. A cell becomes the 32-byte SHA-256 digest Snapchat matches on, or is
counted as empty or invalid and skipped. A value that already is 64 hexadecimal characters is
taken as a hash made upstream and passed through as it is (hashing it again would make it
unmatchable). Digests stay 32 raw bytes until a request body is written, which halves the
memory of the de-duplication set compared with hex strings.

``digest`` is the rule for one value; ``digest_batches`` applies the same rules to a whole
column in one pass (the export's hot loop) and is tested against ``digest``.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_MAX_EMAIL_LENGTH = 254
_DIGEST_SIZE = 32


class IdentifierType(enum.Enum):
    """The identifier kinds Snapchat matches; the value is the request schema."""

    EMAIL = "EMAIL_SHA256"
    PHONE = "PHONE_SHA256"
    MOBILE_AD_ID = "MOBILE_AD_ID_SHA256"

    @property
    def schema(self) -> str:
        return self.value

    @property
    def column_key(self) -> str:
        """The key naming this kind's column in an export definition's ``columns``."""
        return self.name.lower()


class Rejection(enum.Enum):
    EMPTY = "empty"
    INVALID = "invalid"


@dataclass
class Tally:
    """Counters of one identifier column over a run."""

    rows: int = 0
    empty: int = 0
    invalid: int = 0
    prehashed: int = 0
    duplicates: int = 0


Normaliser = Callable[[str], "str | None"]


# The accepted address grammar (after trimming and lowercasing), the RFC 5321 "Mailbox" with a
# dot-atom local part, as RFC 6531 extends it to non-ASCII letters and digits:
#   local  = atom *("." atom), at most 64 characters; atom = 1*(atext)
#   atext  = ASCII letters, digits and ! # $ % & ' * + / = ? ^ _ ` { | } ~ -
#            or a non-ASCII letter, mark or digit (Unicode categories L, M, N)
#   domain = label 1*("." label), the last label not all digits; at most 253 characters
#   label  = 1 to 63 letters (and their marks), digits or "-", not starting or ending
#            with "-"
# and at most 254 characters in all. Quoted local parts, address literals ([192.0.2.1]),
# comments, display names, "mailto:", markup and spreadsheet formulas around an address are
# all outside it, so such cells count as invalid rather than being hashed as if they were an
# address.
_NON_ASCII_ALNUM = r"[^\x00-\x7f]"  # outside ASCII: only letters, marks and digits, see _email
_ATEXT = rf"(?:[a-z0-9!#$%&'*+/=?^_`{{|}}~-]|{_NON_ASCII_ALNUM})"
_LETTER_DIGIT = rf"(?:[a-z0-9]|{_NON_ASCII_ALNUM})"
_LABEL = rf"{_LETTER_DIGIT}(?:(?:{_LETTER_DIGIT}|-){{0,61}}{_LETTER_DIGIT})?"
_EMAIL_GRAMMAR = re.compile(
    rf"(?=[^@]{{1,64}}@){_ATEXT}+(?:\.{_ATEXT}+)*"
    rf"@(?=.{{1,253}}\Z)(?:{_LABEL}\.)+(?![0-9]+\Z){_LABEL}"
)


def _email(value: str) -> str | None:
    """Snap's rule for a trimmed email (lowercase), if it fits the grammar above; else None."""
    value = value.lower()
    if len(value) > _MAX_EMAIL_LENGTH or not _EMAIL_GRAMMAR.fullmatch(value):
        return None
    if not value.isascii() and not all(
        unicodedata.category(c)[0] in "LMN" for c in value if not c.isascii()
    ):
        return None  # a non-ASCII space, symbol, punctuation or control character
    return value


_PHONE_SEPARATORS = str.maketrans("", "", " -.()/\t")
_MIN_PHONE_DIGITS, _MAX_PHONE_DIGITS = 7, 15  # E.164 allows at most 15 digits


def phone_normaliser(default_country_code: str | None) -> Callable[[str], str | None]:
    """Snap's rule for phone numbers: digits only, with the country code.

    ``+``, ``00`` or both together (``+0049 …``) introduce the country code, and such a
    number is otherwise kept as written (some countries' numbers start with 0 after the
    code), except that a trunk
    ``0`` written as ``(0)`` (``+44 (0)20 …``) is dropped. A national number (leading ``0``)
    loses that ``0`` and gains ``default_country_code``; without one it is invalid, since
    hashing it without its country could never match. A number with neither that does not
    start with the default code gets it too. None when the result is not 7 to 15 digits or
    the cell holds anything but digits and separators.
    """

    def normalise_phone(value: str) -> str | None:
        value = value.replace("(0)", "")
        international = value.startswith("+")
        digits = value.lstrip("+").translate(_PHONE_SEPARATORS)
        if not digits.isdigit() or not digits.isascii():
            return None
        if digits.startswith("00"):
            # "00" is the international prefix; typed after a "+" as well ("+0049 …") it is
            # the same prefix twice over, and no country code starts with 0.
            digits, international = digits[2:], True
        code = default_country_code
        if not international:
            if digits.startswith("0"):
                if not code:
                    return None
                digits = code + digits.lstrip("0")
            elif code and not digits.startswith(code):
                digits = code + digits
        if not _MIN_PHONE_DIGITS <= len(digits) <= _MAX_PHONE_DIGITS:
            return None
        return digits

    return normalise_phone


_MOBILE_AD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_AD_ID = "00000000-0000-0000-0000-000000000000"  # what devices send when tracking is off


def _mobile_ad_id(value: str) -> str | None:
    """Snap's rule for IDFA and GAID: lowercase, hyphens kept; must be a UUID, not all zero."""
    value = value.lower()
    if not _MOBILE_AD_ID.fullmatch(value) or value == _ZERO_AD_ID:
        return None
    return value


def normaliser(kind: IdentifierType, default_country_code: str | None = None) -> Normaliser:
    if kind is IdentifierType.EMAIL:
        return _email
    if kind is IdentifierType.PHONE:
        return phone_normaliser(default_country_code)
    return _mobile_ad_id


def normalise(
    kind: IdentifierType, raw: str, default_country_code: str | None = None
) -> str | Rejection:
    """The value Snapchat hashes for one cell: trimmed, then normalised by type."""
    value = raw.strip()
    if not value:
        return Rejection.EMPTY
    normalised = normaliser(kind, default_country_code)(value)
    return Rejection.INVALID if normalised is None else normalised


def normalise_email(raw: str) -> str | Rejection:
    return normalise(IdentifierType.EMAIL, raw)


def digest(
    kind: IdentifierType, raw: str, default_country_code: str | None = None
) -> bytes | Rejection:
    """The 32-byte digest Snapchat matches for one cell; an upstream hash passes through."""
    stripped = raw.strip()
    if len(stripped) == 64 and _HEX64.fullmatch(stripped):
        return bytes.fromhex(stripped)
    normalised = normalise(kind, stripped, default_country_code)
    if isinstance(normalised, Rejection):
        return normalised
    return hashlib.sha256(normalised.encode()).digest()


def email_digest(raw: str) -> bytes | Rejection:
    return digest(IdentifierType.EMAIL, raw)


TICK_ROWS = 1 << 16


def digest_batches(
    cells: Iterable[str],
    normalise_value: Normaliser,
    size: int,
    tally: Tally,
    tick: Callable[[], None] | None = None,
) -> Iterator[list[bytes]]:
    """The export loop: ``digest`` of every cell, first occurrences only, in batches.

    One pass, one generator: per-row results become counters on ``tally`` (brought up to
    date whenever a batch is handed out). Batches are a pure function of the cells and
    ``size``, which is what lets an interrupted run rebuild the same ones. Memory: one
    32-byte bytes object per distinct identifier, about 100 bytes each with the set's own
    table, is the only state that grows with the segment. ``tick`` is called, with
    ``tally`` up to date, every ``TICK_ROWS`` rows (so that a long read can show progress).
    """
    sha256 = hashlib.sha256
    is_hex = _HEX64.fullmatch
    fromhex = bytes.fromhex
    seen: set[bytes] = set()
    add = seen.add
    rows = empty = invalid = prehashed = distinct = 0
    batch: list[bytes] = []
    append = batch.append

    def count() -> None:
        tally.rows, tally.empty, tally.invalid = rows, empty, invalid
        tally.prehashed, tally.duplicates = prehashed, rows - empty - invalid - distinct

    source = iter(cells)
    try:
        # In chunks of TICK_ROWS, so that the tick costs nothing per row.
        while chunk := list(islice(source, TICK_ROWS)):
            first = rows + 1
            for rows, raw in enumerate(chunk, first):  # noqa: B007 - read by count()
                value = raw.strip()
                if not value:
                    empty += 1
                    continue
                if len(value) == 64 and is_hex(value):
                    prehashed += 1
                    found = fromhex(value)
                else:
                    normalised = normalise_value(value)
                    if normalised is None:
                        invalid += 1
                        continue
                    found = sha256(normalised.encode()).digest()
                add(found)
                if len(seen) == distinct:
                    continue  # seen before in this run
                distinct += 1
                append(found)
                if len(batch) == size:
                    count()
                    yield batch
                    batch = []
                    append = batch.append
            if tick is not None:
                count()
                tick()
        if batch:
            count()
            yield batch
    finally:
        count()


class UsersBody:
    """The JSON body of a users add or remove request, written piece by piece as it is sent.

    ``{"users":[{"schema":[S],"data":[["<hex>"],["<hex>"],...]}]}`` with its exact length
    known up front, so it goes out with a Content-Length and without ever being held whole:
    each piece is a few thousand identifiers, hexlified in C. Iterating again (a retry)
    writes it again from the batch.
    """

    _SEPARATOR = b'"],["'
    _PIECE = 4096  # identifiers per piece: about 280 KB

    def __init__(self, schema: str, batch: list[bytes]) -> None:
        if not batch:
            raise ValueError("a users request needs at least one identifier")
        self._head = b'{"users":[{"schema":["' + schema.encode() + b'"],"data":[["'
        self._tail = b'"]]}]}'
        self._batch = batch
        hex_size = 2 * _DIGEST_SIZE
        self._length = (
            len(self._head)
            + len(batch) * hex_size
            + (len(batch) - 1) * len(self._SEPARATOR)
            + len(self._tail)
        )

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        batch, piece, separator = self._batch, self._PIECE, self._SEPARATOR
        for start in range(0, len(batch), piece):
            hexed = binascii.hexlify(b"".join(batch[start : start + piece]), b"|", _DIGEST_SIZE)
            yield hexed.replace(b"|", separator)
            if start + piece < len(batch):
                yield separator
        yield self._tail

    def __bytes__(self) -> bytes:
        return b"".join(self)
