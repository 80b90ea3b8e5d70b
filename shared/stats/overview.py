"""The admin overview: what ``GET /api/manage/stats`` and ``signup-admin status`` show, from the day index.

It reads at most ``days`` partitions' summary shards (one ranged query per day, all in parallel, never a
scan) and the shared write budget's stored schedule (``shared.graph.budget``, read only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from .. import telemetry
from ..errors import StorageError, ValidationFailed
from ..graph.budget import WRITES, BudgetStore
from ..lifecycle.models import Status, iso, utcnow
from .causes import cause_of
from .index import CONVERSION_KEY, DOUBT_KEY, ERROR_KEY, STATUS_KEY, TTI_BOUNDS, TTI_KEY, TableDayIndex

log = logging.getLogger(__name__)

MAX_DAYS: Final = 90
DEFAULT_DAYS: Final = 30
MAX_FAILURES: Final = 20
# The budget's model keeps this much headroom below Graph's limit (``SharedBucket``'s default).
HEADROOM: Final = 0.025


def parse_days(value: str | None) -> int:
    """``?days=`` (1 to 90, default 30)."""
    if not value:
        return DEFAULT_DAYS
    if not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise ValidationFailed({"days": [f"A whole number from 1 to {MAX_DAYS}."]})
    return int(value)


def quantile(buckets: list[dict[str, Any]], total: int, q: float) -> float | None:
    """The ``q`` quantile from cumulative-free bucket counts, interpolated within its bucket (None: no data).

    Past the last bound the bound itself is answered (a lower bound of the true value).
    """
    if total == 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for bucket in buckets:
        count: int = bucket["count"]
        upper: float | None = bucket["le"]
        if count and seen + count >= rank:
            if upper is None:
                return lower
            return round(lower + (upper - lower) * (rank - seen) / count, 1)
        seen += count
        lower = float(upper) if upper is not None else lower
    return lower


class Overview:
    """Builds the overview's figures."""

    def __init__(
        self,
        index: TableDayIndex,
        budget: BudgetStore | None,
        *,
        budget_limit: int,
        budget_window: float,
        cache_seconds: float = 0.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._cache_seconds = cache_seconds
        self._cached: dict[int, tuple[float, dict[str, Any]]] = {}
        self._reading: dict[int, asyncio.Lock] = {}
        self._index = index
        self._budget = budget
        self._limit = budget_limit
        self._window = budget_window
        self._clock = clock

    async def stats(self, days: int = DEFAULT_DAYS) -> dict[str, Any]:
        """The figures of the last ``days`` intake days (today included); figures read within the last
        ``cache_seconds`` are answered again (``generatedAt`` says when), and one reader at a time reads anew."""
        if self._cache_seconds <= 0:
            return await self._read(days)
        async with self._reading.setdefault(days, asyncio.Lock()):
            cached = self._cached.get(days)
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            figures = await self._read(days)
            self._cached[days] = (time.monotonic() + self._cache_seconds, figures)
            return figures

    async def _read(self, days: int) -> dict[str, Any]:
        now = self._clock()
        dates = [(now - timedelta(days=i)).date() for i in range(days - 1, -1, -1)]
        summaries, budget = await asyncio.gather(
            asyncio.gather(*(self._index.summary(day) for day in dates)), self.budget()
        )
        total: Counter[str] = Counter()
        per_day = []
        for day, counts in zip(dates, summaries, strict=True):
            total.update(counts)
            statuses = {k[len(STATUS_KEY) :]: v for k, v in sorted(counts.items()) if k.startswith(STATUS_KEY) and v}
            per_day.append({"date": day.isoformat(), "counts": statuses})
        bounds: list[float | None] = [*TTI_BOUNDS, None]
        buckets: list[dict[str, Any]] = [
            {"le": bound, "count": total.get(f"{TTI_KEY}{i}", 0)} for i, bound in enumerate(bounds)
        ]
        invited = sum(b["count"] for b in buckets)
        failures = []
        codes = [(k[len(ERROR_KEY) :], v) for k, v in total.items() if k.startswith(ERROR_KEY) and v > 0]
        for code, count in sorted(codes, key=lambda item: (-item[1], item[0]))[:MAX_FAILURES]:
            cause, fix = cause_of(code)
            failures.append({"code": code, "count": count, "cause": cause, "fix": fix})
        conversions_to_rerun = sum(total.get(CONVERSION_KEY + s.value, 0) for s in (Status.FAILED, Status.UNKNOWN))
        return {
            "generatedAt": iso(now),
            "days": per_day,
            "timeToInvite": {
                "buckets": buckets,
                "count": invited,
                "p50": quantile(buckets, invited, 0.5),
                "p95": quantile(buckets, invited, 0.95),
            },
            "failures": failures,
            "budget": budget,
            "attention": {
                "pendingReview": total.get(STATUS_KEY + Status.PENDING_APPROVAL.value, 0),
                "inDoubt": total.get(DOUBT_KEY, 0) + total.get(STATUS_KEY + Status.UNKNOWN.value, 0),
                "conversionsToRerun": conversions_to_rerun,
            },
        }

    async def budget(self) -> dict[str, Any]:
        """The shared write budget: writes spoken for in the current window against the limit.

        From the schedule's ``tat`` (when the model's bucket is next empty): the slots from one window ago up
        to ``tat`` are spent or handed out. No stored schedule (local pacing, or nothing written yet): 0.
        """
        used = 0
        if self._budget is not None:
            state = await self._budget.read(WRITES)
            if state is not None:
                rate = self._limit * (1 - HEADROOM) / self._window
                spoken = (state.tat - (time.time() - self._window)) * rate
                used = max(0, min(self._limit, round(spoken)))
        fraction = round(used / self._limit, 4) if self._limit else 0.0
        return {"limit": self._limit, "windowSeconds": self._window, "used": used, "fraction": fraction}

    async def publish_budget(self) -> dict[str, Any] | None:
        """Read the budget and record it as the ``graph.budget.used`` and ``graph.budget.limit`` gauges (None
        when storage could not be read: the gauges keep their last value)."""
        try:
            budget = await self.budget()
        except StorageError as exc:
            log.warning("stats.budget_unread error=%s", type(exc).__name__)
            return None
        telemetry.gauge("graph.budget.used", budget["used"], "1", budget="writes")
        telemetry.gauge("graph.budget.limit", budget["limit"], "1", budget="writes")
        return budget
