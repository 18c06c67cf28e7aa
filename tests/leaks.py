"""Checking captured text for private values (used by the privacy-sensitive tests)."""

from __future__ import annotations

from collections.abc import Iterable


def assert_no_leaks(where: str, text: str, forbidden: Iterable[str]) -> None:
    """Fail if any forbidden value (an email, hash, token or secret) occurs in ``text``.

    The message says how many leaked and how long the first one is, never the value itself.
    """
    folded = text.lower()
    leaked = sorted(value for value in {v.strip().lower() for v in forbidden} if value in folded)
    assert not leaked, (
        f"{len(leaked)} private values in the {where}, e.g. one of {len(leaked[0])} characters"
    )
