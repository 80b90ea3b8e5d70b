"""Six-field NCRONTAB schedules, as the Functions timer trigger reads them.

``{second} {minute} {hour} {day} {month} {day-of-week}``; each field is ``*``,
a value, a range ``a-b``, a step over either (``*/n``, ``a-b/n``, ``a/n`` = from
``a`` to the field's end), or a comma list of those. Months and days of the week
may be named (``Jan``, ``Mon``); Sunday is 0. As in NCrontab (and unlike Vixie
cron) a time must match the day of the month *and* the day of the week.

A small parser of our own rather than a library: croniter would need its
``day_or=False`` and ``second_at_beginning=True`` modes to agree with NCrontab,
and this is all the local host needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names for lowest upwards)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_PART = re.compile(r"^(?:(?P<star>\*)|(?P<low>\w+)(?:-(?P<high>\w+))?)(?:/(?P<step>\d+))?$")
# 29 February falls on each day of the week within 28 years; no satisfiable schedule waits longer.
_HORIZON_DAYS = 29 * 366


def _value(text: str, field: str, lowest: int, highest: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return lowest + names.index(text.lower())
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise ValueError(f"{field} {text!r} is not in {lowest}-{highest}")
    return int(text)


def _field(text: str, field: str, lowest: int, highest: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = _PART.match(part)
        if not match:
            raise ValueError(f"{field} field {text!r} is not valid")
        if match["star"]:
            low, high = lowest, highest
        else:
            low = _value(match["low"], field, lowest, highest, names)
            high = low if match["high"] is None else _value(match["high"], field, lowest, highest, names)
            if match["high"] is None and match["step"]:
                high = highest
        step = int(match["step"] or 1)
        if step == 0 or low > high:
            raise ValueError(f"{field} field {text!r} is not valid")
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed NCRONTAB expression."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    def _day_matches(self, day: date) -> bool:
        return day.month in self.months and day.day in self.days and (day.weekday() + 1) % 7 in self.weekdays

    def _first_time(self, earliest: time) -> time | None:
        for hour in sorted(h for h in self.hours if h >= earliest.hour):
            later_hour = hour > earliest.hour
            for minute in sorted(m for m in self.minutes if later_hour or m >= earliest.minute):
                later_minute = later_hour or minute > earliest.minute
                for second in sorted(s for s in self.seconds if later_minute or s >= earliest.second):
                    return time(hour, minute, second)
        return None

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment`` (in ``moment``'s time zone)."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        day = start.date()
        for offset in range(_HORIZON_DAYS):
            if self._day_matches(day):
                at = self._first_time(start.time() if offset == 0 else time(0))
                if at is not None:
                    return datetime.combine(day, at, tzinfo=moment.tzinfo)
            day += timedelta(days=1)
        raise ValueError(f"schedule {self.expression!r} never occurs")


def parse(expression: str) -> Schedule:
    """Parse a six-field NCRONTAB expression; ``ValueError`` names what is wrong."""
    parts = expression.split()
    if len(parts) != 6:
        raise ValueError(f"expected six fields (seconds first), got {len(parts)} in {expression!r}")
    fields = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    schedule = Schedule(expression, *fields)
    schedule.next_after(datetime(2000, 1, 1))  # refuse a schedule that can never fire, such as 30 February
    return schedule
