"""Normalising and hashing identifiers: the one place Snapchat's matching rules live.

Pure functions, no I/O. The rules work on whole columns at once (Apache Arrow arrays, as the
CSV reader hands them over), so that trimming, lowercasing and the grammar checks run in
Arrow's compiled kernels, and SHA-256 in Apache DataFusion's (an embedded query engine, in
memory, reading the Arrow array in place, with the processor's SHA instructions where it has
them); neither holds Python's lock, so blocks can be worked on by several threads at once.
A cell becomes the 32-byte
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
import functools
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from datafusion import SessionConfig, SessionContext, col
from datafusion import functions as sql

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
    reasons: dict[str, int] = field(default_factory=dict)  # invalid cells, by reason


# What says why cells were refused (``shared.core.coverage.explain``): the kind, the trimmed
# cells the column rules refused, the default country code; counts by reason.
Explainer = Callable[["IdentifierType", list[str], str | None], Mapping[str, int]]


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
_MAX_LOCAL_LENGTH = 64
_LOCAL_LENGTH = rf"^[^@]{{1,{_MAX_LOCAL_LENGTH}}}@"
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
    # The shape has one "@"; where the value is ASCII, its position is the local part's
    # length in characters. Elsewhere (rarely) a longer byte count may still be few enough
    # characters: those are measured by the pattern. The domain's own limit, 253, needs no
    # check: the whole is at most 254 characters, with an "@" and a local part before it.
    ascii_only = pc.string_is_ascii(lowered)
    local_fits = pc.less_equal(pc.find_substring(lowered, "@"), _MAX_LOCAL_LENGTH)
    unsure = _where(pc.and_not(pc.and_not(ok, local_fits), ascii_only))
    if len(unsure):
        measured = _where(_matches(pc.take(lowered, unsure), _LOCAL_LENGTH))
        local_fits = pc.or_(local_fits, _marked(len(lowered), unsure[measured]))
    ok = pc.and_(ok, local_fits)
    # Only a value ending in a digit can have an all-digit last label.
    last = pc.utf8_slice_codeunits(lowered, -1)
    suspects = _where(pc.and_(ok, pc.ascii_is_decimal(last)))
    if len(suspects):
        numeric = _where(_matches(pc.take(lowered, suspects), _NUMERIC_LAST_LABEL))
        ok = pc.and_not(ok, _marked(len(lowered), suspects[numeric]))
    unusual = _where(pc.and_not(ok, ascii_only))
    if len(unusual):
        # A non-ASCII space, symbol, punctuation or control character makes it invalid.
        fine = _matches(pc.take(lowered, unusual), _ONLY_LETTERS_MARKS_DIGITS)
        ok = pc.and_not(ok, _marked(len(lowered), unusual[_where(pc.invert(fine))]))
    return pc.if_else(ok, lowered, pa.scalar(None, pa.string()))


def _where(mask: pa.Array) -> np.ndarray:
    """The positions where a boolean array is true."""
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))


def _marked(size: int, rows: np.ndarray) -> pa.Array:
    """A boolean array of ``size``, true at ``rows``."""
    marked = np.zeros(size, dtype=bool)
    marked[rows] = True
    return pa.array(marked)


_PHONE_SEPARATORS = r"[ \-.()/\t]"
_MIN_PHONE_DIGITS, _MAX_PHONE_DIGITS = 7, 15  # E.164 allows at most 15 digits


@functools.cache
def _dialling(code: str) -> tuple[str | None, re.Pattern[str] | None]:
    """The trunk prefix and the international exit code (a pattern; None where it is the
    plain ``00`` every number is read with anyway) of the main country of ``code``, from
    Google's libphonenumber metadata; ``0`` and ``00`` for a code it does not know."""
    region = phonenumbers.region_code_for_country_code(int(code))
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return "0", None
    exit_code = metadata.international_prefix
    pattern = re.compile(f"(?:{exit_code})") if exit_code and exit_code != "00" else None
    return metadata.national_prefix or None, pattern


def dial(digits: str, code: str | None, *, plus: bool = False) -> str | None:
    """One number as Snapchat hashes it, before its length is checked: ``digits`` are the
    cell's digits (``+`` and separators removed; ``plus``: it started with ``+``), completed
    by the dialling rules of the default country ``code``; None for a national number and
    no default. The reference the column rule ``_phone`` is held to; it decides itself the
    numbers that rule leaves to it (an exit code other than ``00``, a stray leading 0).

    With a ``+``, or ``00`` (the exit code Snapchat reads everywhere), the country code
    follows. Else, with a default country: its own exit code (``011`` in the US) introduces
    a country code; its trunk prefix (``0`` in most countries, ``1`` in the US, ``8`` in
    Russia) is replaced by the country code; where it has none (Italy) a leading 0 belongs
    to the number; elsewhere a leading 0 that is no prefix is dropped (``01 706 …`` in the
    US is ``1 706 …``); a number that already starts with the code keeps it, else gains it.
    """
    if plus or (digits.startswith("00") and not code):
        return digits[2:] if digits.startswith("00") else digits
    if not code:
        return None if digits.startswith("0") else digits
    return _dial_in(code, digits)


def _dial_in(code: str, digits: str) -> str:
    """``dial`` for a number typed without ``+``, in the country of ``code``."""
    trunk, exit_code = _dialling(code)
    if exit_code is not None and (found := exit_code.match(digits)):
        return digits[found.end() :]
    if digits.startswith("00"):
        return digits[2:]
    if trunk and digits.startswith(trunk):
        return code + digits[len(trunk) :]
    if digits.startswith("0"):
        stripped = digits.lstrip("0")
        return code + digits if trunk is None or not stripped else _dial_in(code, stripped)
    return digits if digits.startswith(code) else code + digits


def _phone(values: pa.Array, default_country_code: str | None) -> pa.Array:
    """Snap's rule for phone numbers: digits only, with the country code; else null.

    ``dial`` says how a number is completed; this is the same rule on whole columns, with
    the default country's trunk prefix stripped in the kernels and the rare numbers that
    start with another exit code or a stray 0 handed to ``dial`` one by one. A trunk ``0``
    written as ``(0)`` (``+44 (0)20 …``) is dropped. Null when the result is not 7 to 15
    digits or the cell holds anything but ASCII digits and the separators space - . ( ) /
    and tab. Examples: ``020 7946 0958`` with default 44 and ``011 44 20 7946 0958`` with
    default 1 are ``442079460958``; ``01(706)-767-5127`` with default 1 is ``17067675127``;
    ``06 6982 0000`` with default 39 is ``390669820000``.
    """
    value = pc.replace_substring(values, "(0)", "")
    plus = pc.starts_with(value, "+")
    digits = pc.replace_substring_regex(pc.utf8_ltrim(value, characters="+"), _PHONE_SEPARATORS, "")
    ok = _matches(digits, r"^[0-9]+$")
    double_zero = pc.starts_with(digits, "00")
    zero = pc.and_not(pc.starts_with(digits, "0"), double_zero)
    international = pc.or_(plus, double_zero)
    after_zeros = pc.if_else(double_zero, pc.utf8_slice_codeunits(digits, 2), digits)
    code = default_country_code
    if not code:
        ok = pc.and_not(ok, pc.and_not(zero, plus))
        return _phone_length(pc.if_else(international, after_zeros, digits), ok)
    trunk, exit_code = _dialling(code)
    hard: pa.Array | pa.Scalar = pa.scalar(False)
    if exit_code is not None:
        hard = _matches(digits, f"^{exit_code.pattern}")
    trunked = pc.starts_with(digits, trunk) if trunk else pa.scalar(False)
    if trunk:
        hard = pc.or_(hard, pc.and_not(zero, trunked))  # a stray leading 0
    hard = pc.and_(pc.and_not(hard, plus), ok)
    national = pc.if_else(
        trunked,
        pc.binary_join_element_wise(code, pc.utf8_slice_codeunits(digits, len(trunk or "")), ""),
        pc.if_else(
            pc.or_(zero, pc.invert(pc.starts_with(digits, code))),
            pc.binary_join_element_wise(code, digits, ""),
            digits,
        ),
    )
    dialled = pc.if_else(pc.or_(plus, double_zero), after_zeros, national)
    rows = _where(hard)
    if len(rows):
        decided = [dial(d, code) for d in pc.take(digits, rows).to_pylist()]
        dialled = pc.replace_with_mask(dialled, _marked(len(digits), rows), pa.array(decided))
    return _phone_length(dialled, ok)


def _phone_length(digits: pa.Array, ok: pa.Array) -> pa.Array:
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
    explain: Explainer | None = None,
) -> bytes:
    """The digests of a column's valid cells, 32 bytes each, concatenated in row order
    (repeats included: de-duplication comes later). ``tally`` gets the rows, empty, invalid
    and already-hashed cells added; with ``explain``, the invalid ones by reason too (only
    the refused cells, usually few, are looked at one by one)."""
    if isinstance(cells, pa.ChunkedArray):
        cells = cells.combine_chunks() if cells.num_chunks != 1 else cells.chunk(0)
    trimmed = pc.utf8_trim_whitespace(pc.fill_null(cells, ""))
    lengths = pc.binary_length(trimmed)
    present = pc.greater(lengths, 0)
    hashed = _upstream_hashes(trimmed, lengths)
    plain_rows = pc.and_not(present, hashed)
    plain = pc.filter(trimmed, plain_rows)
    normalised = normalise_column(kind, plain, default_country_code)
    valid = normalised.drop_null()
    upstream = pc.filter(trimmed, hashed)
    tally.rows += len(cells)
    tally.empty += len(cells) - (pc.sum(present).as_py() or 0)
    tally.invalid += len(normalised) - len(valid)
    if explain is not None and len(valid) < len(normalised):
        refused = pc.filter(plain, pc.is_null(normalised)).to_pylist()
        for reason, count in explain(kind, refused, default_country_code).items():
            tally.reasons[reason] = tally.reasons.get(reason, 0) + count
    tally.prehashed += len(upstream)
    digests = _sha256(valid)
    if not len(upstream):
        return digests
    # Upstream hashes go where their rows are: the digests stay in row order, so a kind's
    # stream of digests does not depend on where blocks end (what is sent while a snapshot
    # is still read relies on it).
    ours = pc.filter(pc.indices_nonzero(plain_rows), normalised.is_valid()).to_numpy()
    theirs = pc.indices_nonzero(hashed).to_numpy()
    order = np.argsort(np.concatenate((ours, theirs)), kind="stable")
    joined = digests + bytes.fromhex("".join(upstream.to_pylist()))
    in_rows: bytes = np.frombuffer(joined, dtype=f"V{_DIGEST_SIZE}")[order].tobytes()
    return in_rows


def _upstream_hashes(trimmed: pa.Array, lengths: pa.Array) -> pa.Array:
    """Which cells hold a hash made upstream: 64 hexadecimal characters (the pattern only
    looks at the cells of that length)."""
    sized = _where(pc.equal(lengths, 64))
    hexed = _where(_matches(pc.take(trimmed, sized), _HEX64)) if len(sized) else sized
    return _marked(len(trimmed), sized[hexed])


_engines = threading.local()


def _sha256(values: pa.Array) -> bytes:
    """The SHA-256 digests of the UTF-8 strings ``values``, concatenated in order."""
    if not len(values):
        return b""
    engine = getattr(_engines, "context", None)
    if engine is None:
        # One engine per thread, each query on that thread only: blocks are the parallelism.
        engine = _engines.context = SessionContext(SessionConfig().with_target_partitions(1))
    # A registered table, dropped after the query: a frame made with from_arrow would stay
    # in the engine's catalog, and its input with it, until the engine goes.
    engine.register_record_batches("cells", [[pa.record_batch({"value": values})]])
    try:
        hashed = engine.table("cells").select(sql.sha256(col("value"))).to_arrow_table()
    finally:
        engine.deregister_table("cells")
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
