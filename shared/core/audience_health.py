"""What Snapchat made of a run: the audience check's figures and warnings. Pure.

Snapchat reports no match rate and no per-identifier result, only a segment's
``upload_status``, a rounded ``approximate_number_users`` that appears some time after the
upload and ``targetable_status``. From those and the run's own counts this module makes:

- the **matched estimate**: ``approximate_number_users`` once ``upload_status`` is COMPLETE;
- the **match rate** where it is honest: matched ÷ managed for a mirror audience (the app
  knows exactly how many identifiers it holds), matched ÷ distinct identifiers sent within
  the audience's retention for add mode (an upper bound of the denominator: a person re-sent
  by several runs counts once per run, so the rate is a lower bound);
- **warnings**, each a code and a message (counts only, never an identifier).

Used by ``shared.runs.audience_checks`` (the checks) and the HTTP API (the export overview).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from shared.core.runrecord import RunRecord, RunStatus

TARGETABLE_MINIMUM = 1000  # matched users Snapchat needs before it lets an audience be targeted
LIFETIME_DAYS = 9999  # Snapchat's retention_in_days for members that never leave
AUDIENCE_CAP = 1000  # audiences (segments) per ad account
CAP_NEAR_SHARE = 0.9  # audience_cap_near from 90 % of the cap
AGE_OUT_MARGIN_DAYS = 14  # members_age_out this long before the retention runs out
RATE_HISTORY = 5  # the previous runs whose median match rate a drop is measured against
TREND_LENGTH = 20  # runs in an export's trend
WARNING_CODES = ("too_few_users", "match_rate_dropped", "audience_cap_near", "members_age_out")


def iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def warning(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def matched_estimate(segment: dict[str, Any]) -> int | None:
    """Snapchat's matched count, once the upload is processed (absent or stale before)."""
    size = segment.get("approximate_number_users")
    if segment.get("upload_status") != "COMPLETE" or type(size) is not int or size < 0:
        return None
    return size


def managed(record: RunRecord) -> int:
    """What a mirror audience holds after a successful run: kept plus added."""
    return record.unchanged + record.added


def sent_in_retention(runs: Iterable[RunRecord], at: datetime, retention_days: int) -> int:
    """The most identifiers any one successful run sent within the retention window. Each
    add-mode run sends every identifier still in the segment, so the audience holds at least
    that many (more when people who left have not aged out yet); adding the runs up would
    count the same people once per run."""
    since = at - timedelta(days=retention_days)
    largest = 0
    for run in runs:
        ended = parse_iso(run.finished_at)
        if run.status == RunStatus.SUCCEEDED and not run.dry_run and ended and ended >= since:
            largest = max(largest, run.uploaded)
    return largest


def match_rate(matched: int | None, denominator: int) -> float | None:
    if matched is None or denominator <= 0:
        return None
    return round(min(matched / denominator, 1.0), 4)


def single_kind(record: RunRecord) -> str | None:
    """The identifier kind (schema) the run sent, when it sent only one."""
    kinds = [k for k, counts in record.by_type.items() if counts.get("uploaded", 0) or
             counts.get("added", 0) or counts.get("unchanged", 0)]  # fmt: skip
    return kinds[0] if len(kinds) == 1 else None


def too_few_users(targetable_status: str, matched: int | None) -> dict[str, str] | None:
    if targetable_status != "TOO_FEW_USERS":
        return None
    if matched is None:
        more = f"about {TARGETABLE_MINIMUM:,} matched users are needed"
    else:
        short = max(TARGETABLE_MINIMUM - matched, 1)
        more = f"it has about {matched:,} matched users, about {short:,} more are needed"
    return warning(
        "too_few_users",
        f"Snapchat cannot target this audience yet: {more} to reach about "
        f"{TARGETABLE_MINIMUM:,}. Add identifier kinds or segments, or widen the segment.",
    )


def rate_dropped(
    rate: float | None, previous: Sequence[float], drop_percent: float
) -> dict[str, str] | None:
    """A rate below the previous runs' median by more than ``drop_percent`` of it."""
    if rate is None or not previous:
        return None
    median = statistics.median(previous)
    if median <= 0 or rate >= median * (1 - drop_percent / 100):
        return None
    return warning(
        "match_rate_dropped",
        f"The match rate fell to {rate:.0%} from a median of {median:.0%} over the previous "
        f"{len(previous)} run(s), more than {drop_percent:g} %. Check the identifier columns "
        "and their formats (the run's coverage by reason).",
    )


def cap_near(segment_count: int | None) -> dict[str, str] | None:
    if segment_count is None or segment_count < AUDIENCE_CAP * CAP_NEAR_SHARE:
        return None
    return warning(
        "audience_cap_near",
        f"The ad account holds {segment_count:,} audiences of Snapchat's {AUDIENCE_CAP:,}; "
        "new exports that create audiences will be refused. Delete audiences no longer used.",
    )


def age_out(
    mode: str, last_success: str | None, retention_days: int | None, at: datetime
) -> dict[str, str] | None:
    """Add mode: members leave after ``retention_days`` unless re-sent; warn 14 days ahead."""
    ended = parse_iso(last_success)
    if mode != "add" or ended is None or not retention_days or retention_days >= LIFETIME_DAYS:
        return None
    idle = (at - ended).days
    if idle <= retention_days - AGE_OUT_MARGIN_DAYS:
        return None
    left = max(retention_days - idle, 0)
    return warning(
        "members_age_out",
        f"No successful run for {idle} days: the audience's members leave after "
        f"{retention_days} days without being sent again (about {left} days left). Look at "
        "the export's runs.",
    )


def rates_before(runs: Iterable[RunRecord], run_id: str) -> list[float]:
    """The match rates of the (at most 5) newest runs older than ``run_id``."""
    ordered = sorted((r for r in runs if r.run_id < run_id), key=lambda r: r.run_id, reverse=True)
    rates = [(r.audience_check or {}).get("match_rate") for r in ordered]
    return [float(v) for v in rates if isinstance(v, int | float)][:RATE_HISTORY]


def delay_minutes(checks: int, minutes: Sequence[int]) -> int:
    """Minutes from check ``checks`` (0: the run's end) to the next: the back-off's steps
    are counted from the run's end (5, 15, 60 after it); past them, its last step each time."""
    if checks < len(minutes):
        return max(minutes[checks] - (minutes[checks - 1] if checks else 0), 1)
    return max(minutes[-1], 1)


def next_check_at(checks: int, minutes: Sequence[int], limit: int, at: datetime) -> str | None:
    """When the check after ``checks`` checks is due, or None once ``limit`` were made."""
    if checks >= limit or not minutes:
        return None
    return iso(at + timedelta(minutes=delay_minutes(checks, minutes)))


def health(runs: Sequence[RunRecord], extra: Iterable[dict[str, str]] = ()) -> dict[str, Any]:
    """The export overview's ``audience_health`` from its runs (newest first): the newest
    check's figures and warnings, ``extra`` warnings, and the trend (newest last)."""
    checked = [r for r in runs if r.audience_check]
    trend = [
        {
            "run_id": r.run_id,
            "at": (r.audience_check or {}).get("read_at") or r.finished_at,
            "match_rate": (r.audience_check or {}).get("match_rate"),
            "matched_estimate": (r.audience_check or {}).get("matched_estimate"),
        }
        for r in reversed(checked[:TREND_LENGTH])
    ]
    newest = checked[0].audience_check or {} if checked else {}
    warnings = [w for w in newest.get("warnings", []) if w.get("code") != "members_age_out"]
    return {
        "matched_estimate": newest.get("matched_estimate"),
        "match_rate": newest.get("match_rate"),
        "targetable_status": newest.get("targetable_status"),
        "warnings": [*warnings, *extra],
        "trend": trend,
    }
