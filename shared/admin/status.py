"""``signup-admin status``: the admin overview's figures on the console, and what needs an admin's attention.

It reads the same aggregates as ``GET /api/manage/stats`` (``shared.stats.Overview``: the day index's
summary shards and the write budget's stored schedule), never the records themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

DAY_ROWS = 14  # days listed one by one (all of them are in the totals)


def render(stats: dict[str, Any]) -> list[str]:
    """The figures as console lines."""
    days = stats["days"]
    lines = [f"Sign-ups by intake day (UTC), last {len(days)} days, counted from admission on:"]
    totals: dict[str, int] = {}
    for day in days:
        for status, n in day["counts"].items():
            totals[status] = totals.get(status, 0) + n
    shown = [d for d in days if d["counts"]][-DAY_ROWS:]
    for day in shown:
        lines.append(f"  {day['date']}  " + "  ".join(f"{s} {n}" for s, n in sorted(day["counts"].items())))
    if not shown:
        lines.append("  none")
    lines.append("  total       " + ("  ".join(f"{s} {n}" for s, n in sorted(totals.items())) or "0"))
    tti = stats["timeToInvite"]
    if tti["count"]:
        lines.append(f"Time to invite: {tti['count']} invited, p50 {tti['p50']} s, p95 {tti['p95']} s")
    else:
        lines.append("Time to invite: nobody invited in these days")
    lines.append("Failures by code:" if stats["failures"] else "Failures by code: none")
    for failure in stats["failures"]:
        lines.append(f"  {failure['code']}: {failure['count']}")
        if failure["cause"]:
            lines.append(f"    cause: {failure['cause']}")
            lines.append(f"    fix:   {failure['fix']}")
    budget = stats["budget"]
    lines.append(
        f"Graph write budget: {budget['used']} of {budget['limit']} per {budget['windowSeconds']:g} s "
        f"({budget['fraction']:.1%})"
    )
    attention = stats["attention"]
    lines.append(
        f"Needs attention: {attention['pendingReview']} pending review, {attention['inDoubt']} in doubt, "
        f"{attention['conversionsToRerun']} conversions waiting for a rerun"
    )
    return lines


async def status(days: int, as_json: bool, out: Callable[[str], None]) -> int:
    """Print the overview of the last ``days`` days; 0."""
    from ..services import build_services
    from ..settings import get_settings

    services = build_services(get_settings())
    try:
        assert services.overview is not None
        stats = await services.overview.stats(days)
    finally:
        await services.aclose()
    if as_json:
        out(json.dumps(stats, indent=2))
    else:
        for line in render(stats):
            out(line)
    return 0
