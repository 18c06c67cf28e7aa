"""Why a cell is not an identifier Snapchat can match: the one table of reasons, and a
classifier of one value per kind. Pure.

``shared.core.identifiers`` decides, column by column, what is valid (the run's hot path);
this module only explains a cell that rule refused, in words a marketer can act on ("no
country code", "not an address"). The classifier follows the same rules one value at a
time, and the test suite holds it to the column rules on every known-answer value
(tests/test_preview.py), so that the two never disagree about what is valid. The preview
(``POST /api/preview``) counts these reasons; a run record may count them too.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections import Counter

from shared.core.identifiers import IdentifierType, dial


class Outcome(enum.StrEnum):
    """What becomes of one cell: the first three are counted as such, the rest are the
    reasons an invalid cell is invalid."""

    VALID = "valid"
    EMPTY = "empty"
    PREHASHED = "prehashed"
    NOT_AN_ADDRESS = "not_an_address"
    NUMERIC_DOMAIN = "numeric_domain"
    UNUSUAL_CHARACTER = "unusual_character"
    NOT_A_NUMBER = "not_a_number"
    NO_COUNTRY_CODE = "no_country_code"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    NOT_A_UUID = "not_a_uuid"
    TRACKING_OFF = "tracking_off"
    OTHER = "other"


# The one table: each reason, in words, and what to do about it.
REASONS: dict[Outcome, str] = {
    Outcome.NOT_AN_ADDRESS: "not an email address (no @, a space, a display name, markup …)",
    Outcome.NUMERIC_DOMAIN: "the domain ends in a number (an IP address, not a mail domain)",
    Outcome.UNUSUAL_CHARACTER: "a space, symbol or invisible character inside the address",
    Outcome.NOT_A_NUMBER: "letters or symbols besides the digits, spaces and - . ( ) /",
    Outcome.NO_COUNTRY_CODE: "a national number and no default_country_code to complete it",
    Outcome.TOO_SHORT: "fewer than 7 digits",
    Outcome.TOO_LONG: "too long (an address over 254 characters or 64 before the @; "
    "a number over 15 digits)",
    Outcome.NOT_A_UUID: "not a mobile ad ID (IDFA or GAID: 8-4-4-4-12 hexadecimal digits)",
    Outcome.TRACKING_OFF: "all zeros: the device had ad tracking off",
    Outcome.OTHER: "refused by the rules for another reason",
}

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ASCII_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
_ATEXT = rf"(?:{_ASCII_ATEXT}|[^\x00-\x7f])"
_CHAR = r"(?:[a-z0-9]|[^\x00-\x7f])"
_LABEL = rf"{_CHAR}(?:(?:{_CHAR}|-){{0,61}}{_CHAR})?"
_EMAIL_SHAPE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+{_LABEL}")
_PHONE_SEPARATORS = re.compile(r"[ \-.()/\t]")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def classify(kind: IdentifierType, raw: str, default_country_code: str | None = None) -> Outcome:
    """What the rules make of one cell (``raw`` as the CSV holds it)."""
    trimmed = raw.strip()
    if not trimmed:
        return Outcome.EMPTY
    if _HEX64.fullmatch(trimmed):
        return Outcome.PREHASHED
    if kind is IdentifierType.EMAIL:
        return _email(trimmed.lower())
    if kind is IdentifierType.PHONE:
        return _phone(trimmed, default_country_code)
    lowered = trimmed.lower()
    if not _UUID.fullmatch(lowered):
        return Outcome.NOT_A_UUID
    return Outcome.TRACKING_OFF if lowered.strip("0-") == "" else Outcome.VALID


def explain(
    kind: IdentifierType, refused: list[str], default_country_code: str | None
) -> Counter[str]:
    """Why the column rules refused these (trimmed) cells: how many for each reason of
    ``REASONS``, adding up to their number (a cell the classifier would not refuse counts
    as ``other``; the agreement tests keep that at nothing)."""
    found = Counter(classify(kind, value, default_country_code) for value in refused)
    counts: Counter[str] = Counter()
    for outcome, count in found.items():
        counts[str(outcome if outcome in REASONS else Outcome.OTHER)] += count
    return counts


def _email(lowered: str) -> Outcome:
    if len(lowered) > 254:
        return Outcome.TOO_LONG
    if not _EMAIL_SHAPE.fullmatch(lowered):
        return Outcome.NOT_AN_ADDRESS
    if len(lowered.split("@", 1)[0]) > 64:
        return Outcome.TOO_LONG
    if lowered.rsplit(".", 1)[-1].isascii() and lowered.rsplit(".", 1)[-1].isdigit():
        return Outcome.NUMERIC_DOMAIN
    if any(not c.isascii() and unicodedata.category(c)[0] not in "LMN" for c in lowered):
        return Outcome.UNUSUAL_CHARACTER
    return Outcome.VALID


def _phone(value: str, code: str | None) -> Outcome:
    value = value.replace("(0)", "")
    digits = _PHONE_SEPARATORS.sub("", value.lstrip("+"))
    if not (digits.isascii() and digits.isdigit()):
        return Outcome.NOT_A_NUMBER
    dialled = dial(digits, code, plus=value.startswith("+"))
    if dialled is None:
        return Outcome.NO_COUNTRY_CODE
    if len(dialled) < 7:
        return Outcome.TOO_SHORT
    return Outcome.TOO_LONG if len(dialled) > 15 else Outcome.VALID
