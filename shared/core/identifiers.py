"""Normalising and hashing identifiers: the one place Snapchat's matching rules live.

Pure functions, no I/O. The rules work on whole columns at once (Apache Arrow arrays, as the
CSV reader hands them over), so that trimming, lowercasing and the grammar checks run in
Arrow's compiled kernels, and SHA-256 in DuckDB's (an embedded engine, in memory, reading the
Arrow array in place); neither holds Python's lock, so blocks can be worked on by several
threads at once. A cell becomes the 32-byte
digest Snapchat matches on, or is counted as empty or invalid and skipped. A value that
already is 64 hexadecimal characters is taken as a hash made upstream and passed through as
it is (hashing it again would make it unmatchable).

``digest_column`` is the export's hot loop; ``normalise`` and ``digest`` apply the very same
column rules to one value (the known-answer tests go through them).

Two details follow from the kernels rather than from Python's ``str`` methods: trimming
removes Unicode white space (the same set as ``str.strip``), and lowercasing uses Unicode's
simple case mapping: one character for one, so U+0130 (capital I with a dot) becomes a plain
``i`` and a capital sigma at a word's end the ordinary small sigma, where ``str.lower``
gives ``i`` with a combining dot and the final form of sigma.
"""

from __future__ import annotations

import binascii
import enum
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

_DIGEST_SIZE = 32
_MAX_EMAIL_LENGTH = 254


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


_HEX64 = r"^[0-9a-fA-F]{64}$"

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
# address. The structure is one regular expression (RE2, which has no look-ahead); the
# lengths, the last label and the non-ASCII categories are separate checks, the last one
# only on the few values that hold non-ASCII characters (Unicode classes are slow in RE2).
_NON_ASCII = r"[^\x00-\x7f]"
_ATEXT = rf"(?:[a-z0-9!#$%&'*+/=?^_`{{|}}~-]|{_NON_ASCII})"
_LETTER_DIGIT = rf"(?:[a-z0-9]|{_NON_ASCII})"
_LABEL = rf"{_LETTER_DIGIT}(?:(?:{_LETTER_DIGIT}|-){{0,61}}{_LETTER_DIGIT})?"
_EMAIL_SHAPE = rf"^{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+{_LABEL}$"
_LOCAL_LENGTH = r"^[^@]{1,64}@"
_DOMAIN_LENGTH = r"@.{1,253}$"
_NUMERIC_LAST_LABEL = r"\.[0-9]+$"
_ONLY_LETTERS_MARKS_DIGITS = r"^[\x00-\x7f\p{L}\p{M}\p{N}]*$"


def _matches(values: pa.Array, pattern: str) -> pa.Array:
    return pc.match_substring_regex(values, pattern)


def _email(values: pa.Array) -> pa.Array:
    """Snap's rule for trimmed emails: lowercased where they fit the grammar, else null."""
    lowered = pc.utf8_lower(values)
    ok = pc.and_(
        _matches(lowered, _EMAIL_SHAPE), pc.less_equal(pc.utf8_length(lowered), _MAX_EMAIL_LENGTH)
    )
    ok = pc.and_(ok, _matches(lowered, _LOCAL_LENGTH))
    ok = pc.and_(ok, _matches(lowered, _DOMAIN_LENGTH))
    ok = pc.and_not(ok, _matches(lowered, _NUMERIC_LAST_LABEL))
    unusual = pc.indices_nonzero(pc.and_not(ok, pc.string_is_ascii(lowered)))
    if len(unusual):
        # A non-ASCII space, symbol, punctuation or control character makes it invalid.
        fine = _matches(pc.take(lowered, unusual), _ONLY_LETTERS_MARKS_DIGITS)
        refused = pc.filter(unusual, pc.invert(fine))
        if len(refused):
            mask = pc.is_in(pa.array(range(len(lowered)), pa.int64()), value_set=refused)
            ok = pc.and_not(ok, mask)
    return pc.if_else(ok, lowered, pa.scalar(None, pa.string()))


_PHONE_SEPARATORS = r"[ \-.()/\t]"
_MIN_PHONE_DIGITS, _MAX_PHONE_DIGITS = 7, 15  # E.164 allows at most 15 digits


def _phone(values: pa.Array, default_country_code: str | None) -> pa.Array:
    """Snap's rule for phone numbers: digits only, with the country code; else null.

    ``+``, ``00`` or both together (``+0049 …``) introduce the country code, and such a
    number is otherwise kept as written (some countries' numbers start with 0 after the
    code), except that a trunk ``0`` written as ``(0)`` (``+44 (0)20 …``) is dropped. A
    national number (leading ``0``) loses its leading zeros and gains
    ``default_country_code``; without one it is invalid, since hashing it without its
    country could never match. A number with neither that does not start with the default
    code gets it too. Null when the result is not 7 to 15 digits or the cell holds anything
    but ASCII digits and the separators space - . ( ) / and tab.
    """
    value = pc.replace_substring(values, "(0)", "")
    international = pc.starts_with(value, "+")
    digits = pc.replace_substring_regex(pc.utf8_ltrim(value, characters="+"), _PHONE_SEPARATORS, "")
    ok = _matches(digits, r"^[0-9]+$")
    # "00" is the international prefix; typed after a "+" as well ("+0049 …") it is the
    # same prefix twice over, and no country code starts with 0.
    double_zero = pc.starts_with(digits, "00")
    digits = pc.if_else(double_zero, pc.utf8_slice_codeunits(digits, 2), digits)
    international = pc.or_(international, double_zero)
    national = pc.and_not(pc.starts_with(digits, "0"), international)
    code = default_country_code
    if not code:
        ok = pc.and_not(ok, national)
    else:
        prefixed = pc.binary_join_element_wise(code, pc.utf8_ltrim(digits, characters="0"), "")
        bare = pc.and_not(
            pc.and_not(pc.invert(international), national), pc.starts_with(digits, code)
        )
        digits = pc.if_else(
            national,
            prefixed,
            pc.if_else(bare, pc.binary_join_element_wise(code, digits, ""), digits),
        )
    length = pc.utf8_length(digits)
    ok = pc.and_(
        ok,
        pc.and_(
            pc.greater_equal(length, _MIN_PHONE_DIGITS), pc.less_equal(length, _MAX_PHONE_DIGITS)
        ),
    )
    return pc.if_else(ok, digits, pa.scalar(None, pa.string()))


_MOBILE_AD_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_ZERO_AD_ID = "00000000-0000-0000-0000-000000000000"  # what devices send when tracking is off


def _mobile_ad_id(values: pa.Array) -> pa.Array:
    """Snap's rule for IDFA and GAID: lowercase, hyphens kept; a UUID, not all zero; else null."""
    lowered = pc.utf8_lower(values)
    ok = pc.and_(_matches(lowered, _MOBILE_AD_ID), pc.not_equal(lowered, _ZERO_AD_ID))
    return pc.if_else(ok, lowered, pa.scalar(None, pa.string()))


def normalise_column(
    kind: IdentifierType, trimmed: pa.Array, default_country_code: str | None = None
) -> pa.Array:
    """The values Snapchat hashes for trimmed, non-empty cells; null where a cell is invalid."""
    if kind is IdentifierType.EMAIL:
        return _email(trimmed)
    if kind is IdentifierType.PHONE:
        return _phone(trimmed, default_country_code)
    return _mobile_ad_id(trimmed)


def digest_column(
    kind: IdentifierType,
    cells: pa.Array | pa.ChunkedArray,
    tally: Tally,
    default_country_code: str | None = None,
) -> bytes:
    """The digests of a column's valid cells, 32 bytes each, concatenated in row order
    (repeats included: de-duplication comes later). ``tally`` gets the rows, empty, invalid
    and already-hashed cells added."""
    if isinstance(cells, pa.ChunkedArray):
        cells = cells.combine_chunks() if cells.num_chunks != 1 else cells.chunk(0)
    trimmed = pc.utf8_trim_whitespace(pc.fill_null(cells, ""))
    present = pc.greater(pc.binary_length(trimmed), 0)
    hashed = pc.and_(pc.equal(pc.binary_length(trimmed), 64), _matches(trimmed, _HEX64))
    plain = pc.filter(trimmed, pc.and_not(present, hashed))
    normalised = normalise_column(kind, plain, default_country_code).drop_null()
    upstream = pc.filter(trimmed, hashed)
    tally.rows += len(cells)
    tally.empty += len(cells) - (pc.sum(present).as_py() or 0)
    tally.invalid += len(plain) - len(normalised)
    tally.prehashed += len(upstream)
    digests = _sha256(normalised)
    if len(upstream):
        digests += bytes.fromhex("".join(upstream.to_pylist()))
    return digests


_engines = threading.local()


def _sha256(values: pa.Array) -> bytes:
    """The SHA-256 digests of the UTF-8 strings ``values``, concatenated in order."""
    if not len(values):
        return b""
    engine = getattr(_engines, "connection", None)
    if engine is None:
        # One in-memory engine per thread, on that thread only: blocks are the parallelism.
        engine = _engines.connection = duckdb.connect(config={"threads": 1})
    engine.register("cells", pa.table({"value": values}))
    try:
        hashed = engine.sql("SELECT unhex(sha256(value)) AS digest FROM cells").to_arrow_table()
    finally:
        engine.unregister("cells")
    fixed = hashed.column(0).combine_chunks().cast(pa.binary(_DIGEST_SIZE))
    data: bytes = fixed.buffers()[1].to_pybytes()
    return data[fixed.offset * _DIGEST_SIZE : (fixed.offset + len(fixed)) * _DIGEST_SIZE]


def _one(kind: IdentifierType, raw: str, default_country_code: str | None) -> tuple[bytes, Tally]:
    tally = Tally()
    found = digest_column(kind, pa.array([raw], pa.string()), tally, default_country_code)
    return found, tally


def normalise(
    kind: IdentifierType, raw: str, default_country_code: str | None = None
) -> str | Rejection:
    """The value Snapchat hashes for one cell: trimmed, then normalised by kind."""
    trimmed = raw.strip()
    if not trimmed:
        return Rejection.EMPTY
    value = normalise_column(kind, pa.array([trimmed], pa.string()), default_country_code)[0]
    return Rejection.INVALID if not value.is_valid else str(value.as_py())


def normalise_email(raw: str) -> str | Rejection:
    return normalise(IdentifierType.EMAIL, raw)


def digest(
    kind: IdentifierType, raw: str, default_country_code: str | None = None
) -> bytes | Rejection:
    """The 32-byte digest Snapchat matches for one cell; an upstream hash passes through."""
    found, tally = _one(kind, raw, default_country_code)
    if found:
        return found
    return Rejection.EMPTY if tally.empty else Rejection.INVALID


def email_digest(raw: str) -> bytes | Rejection:
    return digest(IdentifierType.EMAIL, raw)


class UsersBody:
    """The JSON body of a users add or remove request, written piece by piece as it is sent.

    ``{"users":[{"schema":[S],"data":[["<hex>"],["<hex>"],...]}]}`` with its exact length
    known up front, so it goes out with a Content-Length and without ever being held whole:
    each piece is a few thousand identifiers, hexlified in C. Iterating again (a retry)
    writes it again from the batch, the concatenated 32-byte digests.
    """

    _SEPARATOR = b'"],["'
    _PIECE = 4096  # identifiers per piece: about 280 KB

    def __init__(self, schema: str, batch: bytes) -> None:
        if not batch:
            raise ValueError("a users request needs at least one identifier")
        self._head = b'{"users":[{"schema":["' + schema.encode() + b'"],"data":[["'
        self._tail = b'"]]}]}'
        if len(batch) % _DIGEST_SIZE:
            raise ValueError(f"a batch is whole digests of {_DIGEST_SIZE} bytes")
        self._batch = batch
        count = len(batch) // _DIGEST_SIZE
        self._length = (
            len(self._head)
            + count * 2 * _DIGEST_SIZE
            + (count - 1) * len(self._SEPARATOR)
            + len(self._tail)
        )

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        batch, piece, separator = self._batch, self._PIECE * _DIGEST_SIZE, self._SEPARATOR
        for start in range(0, len(batch), piece):
            hexed = binascii.hexlify(batch[start : start + piece], b"|", _DIGEST_SIZE)
            yield hexed.replace(b"|", separator)
            if start + piece < len(batch):
                yield separator
        yield self._tail

    def __bytes__(self) -> bytes:
        return b"".join(self)
