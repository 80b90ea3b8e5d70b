"""The local host's NCRONTAB parser: six fields, seconds first, NCrontab's day matching."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devhost.ncrontab import parse


def _next(expression: str, after: datetime) -> datetime:
    return parse(expression).next_after(after)


def test_seconds_field_comes_first() -> None:
    """``*/1`` in the first field fires every second; ``0 */5 …`` every five minutes on the minute."""
    moment = datetime(2024, 1, 1, 0, 0, 59, 500_000, tzinfo=UTC)
    assert _next("*/1 * * * * *", moment) == datetime(2024, 1, 1, 0, 1, 0, tzinfo=UTC)
    assert _next("0 */5 * * * *", datetime(2024, 1, 1, 23, 57, 0)) == datetime(2024, 1, 2, 0, 0, 0)
    assert _next("0 */5 * * * *", datetime(2024, 1, 1, 23, 55, 0)) == datetime(2024, 1, 2, 0, 0, 0)  # strictly after


def test_lists_ranges_and_ranges_with_steps() -> None:
    """Each field accepts values, ranges, steps over ranges and ``a/n``, in comma lists."""
    schedule = parse("5-20/5,59 0/20 9-11 1,15 */3 *")
    assert schedule.seconds == {5, 10, 15, 20, 59}
    assert schedule.minutes == {0, 20, 40}
    assert schedule.hours == {9, 10, 11}
    assert schedule.days == {1, 15}
    assert schedule.months == {1, 4, 7, 10}
    assert _next("5-20/5,59 0/20 9-11 1,15 */3 *", datetime(2024, 1, 1, 11, 40, 59)) == datetime(2024, 1, 15, 9, 0, 5)


def test_names_and_day_of_week() -> None:
    """Months and days may be named; Sunday is 0; day of month and day of week must both match."""
    assert _next("0 30 9 * Jan Mon", datetime(2024, 1, 1, 9, 30, 0)) == datetime(2024, 1, 8, 9, 30, 0)
    assert _next("0 0 12 * * 0", datetime(2024, 1, 1)) == datetime(2024, 1, 7, 12, 0, 0)  # 7 Jan 2024: Sunday
    # NCrontab intersects the two day fields (Vixie cron would fire on every 13th and every Friday).
    assert _next("0 0 0 13 * 5", datetime(2024, 1, 1)) == datetime(2024, 9, 13)
    assert _next("0 0 0 29 2 1", datetime(2024, 1, 1)) == datetime(2044, 2, 29)  # the next Monday 29 February


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",  # five-field cron
        "60 * * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "* * * * 13 *",
        "* * * * * 7",
        "*/0 * * * * *",
        "5-1 * * * * *",
        "x * * * * *",
        "1,,2 * * * * *",
        "0 0 0 30 2 *",  # never occurs
    ],
)
def test_invalid_expressions_are_refused(expression: str) -> None:
    """Wrong field counts, values out of range, empty steps and impossible dates raise ValueError."""
    with pytest.raises(ValueError):
        parse(expression)
