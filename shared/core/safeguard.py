"""The removal safeguard: a mirror run may not remove a large share of an audience by accident.

Pure rules, no I/O. Before a mirror run sends anything, it works out per identifier kind how
many identifiers the app manages in the audience (what its last successful run left there,
plus what failed runs since may have sent), how many of those it is about to remove, and how
many valid identifiers the snapshot holds. The share of removals is taken of the confirmed
members (the last successful run's), so that additions a failed run may have made cannot
dilute it. The run is refused when, for any kind,

- the snapshot holds no valid identifier of a kind the app manages members of (a blank or
  all-invalid column, or a mapping that points at the wrong column), or
- it would remove more than ``max_removal_percent`` of what the app manages, and more than
  ``always_allowed_removals`` identifiers (so that tiny audiences can still change).

An operator lets one run through on purpose with ``allow_large_removal``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_REMOVAL_PERCENT = 20.0
DEFAULT_ALWAYS_ALLOWED_REMOVALS = 10


class Decision(enum.StrEnum):
    PASSED = "passed"  # within the limits
    BLOCKED = "blocked"  # over a limit: the run fails before sending anything
    ALLOWED = "allowed"  # over a limit, let through by the operator for this run
    WOULD_BLOCK = "would_block"  # a dry run that a real run would be refused for


@dataclass(frozen=True)
class Limits:
    max_removal_percent: float = DEFAULT_MAX_REMOVAL_PERCENT
    always_allowed_removals: int = DEFAULT_ALWAYS_ALLOWED_REMOVALS


@dataclass(frozen=True)
class KindChange:
    """What a mirror run is about to do to one identifier kind of the audience."""

    schema: str
    managed: int  # identifiers of this kind the app may have put in the audience
    removing: int  # of those, how many the run would remove
    valid: int  # distinct valid identifiers of this kind in the snapshot
    confirmed: int = -1  # of ``managed``, those its last successful run left there (-1: all)

    @property
    def base(self) -> int:
        """What the share of removals is taken of: the confirmed members, so that additions
        a failed run may or may not have made cannot dilute it; all managed ones when no
        run has succeeded yet."""
        return self.confirmed if self.confirmed > 0 else self.managed


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    problems: tuple[str, ...]  # one line per kind over a limit; empty when passed
    limits: Limits
    changes: tuple[KindChange, ...]

    @property
    def over_limit(self) -> bool:
        return bool(self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "max_removal_percent": self.limits.max_removal_percent,
            "always_allowed_removals": self.limits.always_allowed_removals,
            "kinds": {
                c.schema: {
                    "managed": c.managed,
                    "confirmed": c.base,
                    "removing": c.removing,
                    "valid": c.valid,
                }
                for c in self.changes
            },
            "problems": list(self.problems),
        }


def judge(
    changes: list[KindChange],
    limits: Limits,
    *,
    audience: str,
    allow_large_removal: bool = False,
    dry_run: bool = False,
) -> Verdict:
    """The safeguard's decision for a mirror run about to make ``changes``."""
    problems = [p for change in changes if (p := _problem(change, limits, audience))]
    if not problems:
        decision = Decision.PASSED
    elif allow_large_removal:
        decision = Decision.ALLOWED
    elif dry_run:
        decision = Decision.WOULD_BLOCK
    else:
        decision = Decision.BLOCKED
    return Verdict(decision, tuple(problems), limits, tuple(changes))


def _problem(change: KindChange, limits: Limits, audience: str) -> str:
    if change.managed == 0 or change.removing == 0:
        return ""
    share = 100.0 * change.removing / change.base
    numbers = (
        f"would remove {change.removing} of {change.base} ({share:.0f}%) {change.schema} "
        f"identifiers the app manages in audience {audience}"
    )
    if change.valid == 0:
        return f"{numbers}: the snapshot holds no valid {change.schema} identifier at all"
    if change.removing <= limits.always_allowed_removals:
        return ""
    if share <= limits.max_removal_percent:
        return ""
    return (
        f"{numbers}; allowed {limits.max_removal_percent:g}% (max_removal_percent) or up to "
        f"{limits.always_allowed_removals} (always_allowed_removals)"
    )


ADVICE = (
    "Nothing was sent. Check that the export's columns name the right CSV columns and that "
    "the snapshot is complete; if the removals are intended, start one run with "
    '{"allow_large_removal": true} (command line: --allow-large-removal), or raise the '
    "export's max_removal_percent"
)
