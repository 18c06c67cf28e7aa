"""When the timer looks next: the next time an NCRONTAB schedule fires. Pure.

The Functions timer takes six fields, ``second minute hour day month day-of-week``, in UTC;
each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a list of
those. Five fields (no seconds) are read as firing at second 0. Names of months and days are
not supported: the console then shows no next time rather than a wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))  # s m h day month weekday
_HORIZON_DAYS = 366 * 4  # a 29 February schedule fires at least once in four years


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday, as in NCRONTAB

    def next_after(self, moment: datetime) -> datetime | None:
        """The first firing strictly after ``moment`` (UTC), or None within four years."""
        start = moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        for _ in range(_HORIZON_DAYS):
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        for second in sorted(self.seconds):
                            at = day.replace(hour=hour, minute=minute, second=second)
                            if at >= start:
                                return at
            day += timedelta(days=1)
        return None

    def _day_matches(self, day: datetime) -> bool:
        """Both day fields must match, as NCRONTAB reads them (unlike Vixie cron's OR)."""
        weekday = (day.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
        return day.day in self.days and weekday in self.weekdays


def parse(expression: str) -> Schedule:
    """An NCRONTAB expression; ValueError names what is wrong."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError("expected six fields: second minute hour day month day-of-week")
    values = [_field(text, low, high) for text, (low, high) in zip(fields, _BOUNDS, strict=True)]
    weekdays = values[5] | ({0} if 7 in values[5] else set())
    seconds, minutes, hours, days, months = (frozenset(v) for v in values[:5])
    return Schedule(
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(weekdays - {7}),
    )


def _field(text: str, low: int, high: int) -> set[int]:
    found: set[int] = set()
    top = 7 if (low, high) == (0, 6) else high  # 7 is Sunday too
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = _number(step_text, 1, top) if step_text else 1
        if base in ("*", "?"):
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first, last = _number(first_text, low, top), _number(last_text, low, top)
            if first > last:
                raise ValueError(f"range {base} runs backwards")
        else:
            first = _number(base, low, top)
            last = high if step_text else first
        found.update(range(first, last + 1, step))
    return found


def _number(text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{text!r} is not a number from {low} to {high}")
    return int(text)


def next_run(expression: str, moment: datetime) -> datetime | None:
    """The next firing after ``moment``; None when the expression is not understood."""
    try:
        return parse(expression).next_after(moment)
    except ValueError:
        return None
