"""Normalising and hashing identifiers: the one place Snapchat's matching rules live.

Pure functions, no I/O. A cell becomes the 32-byte SHA-256 digest Snapchat matches on, or is
counted as empty or invalid and skipped. A value that already is 64 hexadecimal characters is
taken as a hash made upstream and passed through as it is (hashing it again would make it
unmatchable). Digests stay 32 raw bytes until a request body is written, which halves the
memory of the de-duplication set compared with hex strings.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# A plausible address: something, one "@", a domain with at least one inner dot, no white space.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_MAX_EMAIL_LENGTH = 254


class IdentifierType(enum.Enum):
    EMAIL = "EMAIL_SHA256"

    @property
    def schema(self) -> str:
        return self.value


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


def normalise_email(raw: str) -> str | Rejection:
    """Snap's rule (trim, lowercase) plus a plausibility check of the address's shape."""
    value = raw.strip().lower()
    if not value:
        return Rejection.EMPTY
    if len(value) > _MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(value):
        return Rejection.INVALID
    return value


def email_digest(raw: str) -> bytes | Rejection:
    """The digest Snapchat matches for one email cell."""
    stripped = raw.strip()
    if len(stripped) == 64 and _HEX64.fullmatch(stripped):
        return bytes.fromhex(stripped)
    normalised = normalise_email(stripped)
    if isinstance(normalised, Rejection):
        return normalised
    return hashlib.sha256(normalised.encode()).digest()


def email_digests(cells: Iterable[str], tally: Tally) -> Iterator[bytes]:
    """Stream form of ``email_digest`` for the export loop: counts instead of results per row."""
    sha256 = hashlib.sha256
    is_hex = _HEX64.fullmatch
    is_email = _EMAIL.fullmatch
    rows = empty = invalid = prehashed = 0
    try:
        for raw in cells:
            rows += 1
            value = raw.strip()
            if not value:
                empty += 1
            elif len(value) == 64 and is_hex(value):
                prehashed += 1
                yield bytes.fromhex(value)
            else:
                value = value.lower()
                if len(value) > _MAX_EMAIL_LENGTH or not is_email(value):
                    invalid += 1
                else:
                    yield sha256(value.encode()).digest()
    finally:
        tally.rows += rows
        tally.empty += empty
        tally.invalid += invalid
        tally.prehashed += prehashed


def unique(digests: Iterable[bytes], tally: Tally) -> Iterator[bytes]:
    """First occurrence of each digest, in input order; repeats are counted, not sent.

    Memory: one 32-byte bytes object per distinct identifier (about 90 bytes with the set's
    own overhead), the only state that grows with the segment.
    """
    seen: set[bytes] = set()
    add = seen.add
    duplicates = 0
    try:
        for digest in digests:
            if digest in seen:
                duplicates += 1
            else:
                add(digest)
                yield digest
    finally:
        tally.duplicates += duplicates


def batches(digests: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    """Consecutive lists of at most ``size`` digests, in input order (deterministic)."""
    batch: list[bytes] = []
    append = batch.append
    for digest in digests:
        append(digest)
        if len(batch) == size:
            yield batch
            batch = []
            append = batch.append
    if batch:
        yield batch


def users_body(schema: str, batch: list[bytes]) -> bytes:
    """The JSON body of a users add or remove request, written without per-item objects."""
    data = b'"],["'.join(digest.hex().encode() for digest in batch)
    return b'{"users":[{"schema":["' + schema.encode() + b'"],"data":[["' + data + b'"]]}]}'


def sha256_hex(normalised: str) -> str:
    """Lowercase hex SHA-256 of a value that is already normalised."""
    return hashlib.sha256(normalised.encode()).hexdigest()
