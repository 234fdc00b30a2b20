"""A five-field cron expression (`minute hour day-of-month month day-of-week`), in UTC. Pure.

Enough for a drill schedule, and no dependency: `*`, numbers, ranges `a-b`, steps `*/n` and
`a-b/n`, and comma lists. Day-of-week is 0-7 (0 and 7 are Sunday). As in Vixie cron, when both
day fields are restricted a day matches if either does. No names (`mon`), no `@weekly`, no
seconds: an expression that uses them is refused with a message that says what to write.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# (name, lowest, highest) of each field, in order.
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))
# How far back `previous` looks for a matching day: 5 years covers `0 0 29 2 *`.
_MAX_DAYS = 366 * 5


class CronError(ValueError):
    """An expression that is not a five-field cron line."""


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the sets of values each field matches."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday … 6 = Sunday (Python's weekday())
    any_day: bool  # day of month is `*`
    any_weekday: bool  # day of week is `*`

    def matches_day(self, day: dt.date) -> bool:
        """Whether `day` is a day this expression fires on (at some time)."""
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = day.weekday() in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return by_weekday
        if self.any_weekday:
            return by_day
        return by_day or by_weekday

    def previous(self, at: dt.datetime) -> dt.datetime:
        """The latest firing time at or before `at` (an aware UTC datetime)."""
        at = at.astimezone(dt.UTC).replace(second=0, microsecond=0)
        day = at.date()
        for back in range(_MAX_DAYS):
            candidate = day - dt.timedelta(days=back)
            if not self.matches_day(candidate):
                continue
            latest = _latest_time(self, at.time() if back == 0 else None)
            if latest is not None:
                return dt.datetime.combine(candidate, latest, tzinfo=dt.UTC)
        raise CronError(f"cron {self.text!r} never fires")

    def next_after(self, at: dt.datetime) -> dt.datetime:
        """The first firing time strictly after `at`."""
        at = at.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = at.date()
        for ahead in range(_MAX_DAYS):
            candidate = day + dt.timedelta(days=ahead)
            if not self.matches_day(candidate):
                continue
            earliest = _earliest_time(self, at.time() if ahead == 0 else None)
            if earliest is not None:
                return dt.datetime.combine(candidate, earliest, tzinfo=dt.UTC)
        raise CronError(f"cron {self.text!r} never fires")


def _latest_time(cron: Cron, not_after: dt.time | None) -> dt.time | None:
    for hour in sorted(cron.hours, reverse=True):
        if not_after is not None and hour > not_after.hour:
            continue
        for minute in sorted(cron.minutes, reverse=True):
            if not_after is not None and hour == not_after.hour and minute > not_after.minute:
                continue
            return dt.time(hour, minute)
    return None


def _earliest_time(cron: Cron, not_before: dt.time | None) -> dt.time | None:
    for hour in sorted(cron.hours):
        if not_before is not None and hour < not_before.hour:
            continue
        for minute in sorted(cron.minutes):
            if not_before is not None and hour == not_before.hour and minute < not_before.minute:
                continue
            return dt.time(hour, minute)
    return None


def parse_cron(text: str) -> Cron:
    """Parse `text`; raises CronError saying which field is wrong and why."""
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"cron {text!r} has {len(parts)} fields; write five: minute hour "
                        "day-of-month month day-of-week, like '0 6 * * 1' (Mondays at 06:00 UTC)")
    sets = [_field(part, name, low, high) for part, (name, low, high) in zip(parts, _FIELDS,
                                                                             strict=True)]
    # cron's Sunday is 0 or 7, Python's is 6; cron's Monday is 1, Python's 0.
    weekdays = frozenset((value - 1) % 7 for value in sets[4])
    return Cron(text=text, minutes=sets[0], hours=sets[1], days=sets[2], months=sets[3],
                weekdays=weekdays, any_day=parts[2] == "*", any_weekday=parts[4] == "*")


def _field(part: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in part.split(","):
        body, _, step_text = item.partition("/")
        step = _number(step_text, name, 1, high - low + 1) if step_text else 1
        if body == "*":
            first, last = low, high
        elif "-" in body:
            start, _, end = body.partition("-")
            first, last = _number(start, name, low, high), _number(end, name, low, high)
            if first > last:
                raise CronError(f"cron {name} range {body!r} runs backwards; write "
                                f"{last}-{first}")
        else:
            first = _number(body, name, low, high)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _number(text: str, name: str, low: int, high: int) -> int:
    if not text.isdigit():
        raise CronError(f"cron {name} {text!r} is not a number from {low} to {high} (names "
                        "like 'mon' are not supported)")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"cron {name} {value} is outside {low}-{high}")
    return value
