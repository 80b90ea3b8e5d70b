"""The guest sweep: reads the register's due index in bounded pages and applies the rules to each due guest.

``GuestSweep.sweep`` runs on the ``guest_sweep`` timer (``GUEST_SWEEP_SCHEDULE``) and from
``signup-admin lifecycle``. It does nothing, and reads nothing, when no profile of the policy has
lifecycle rules. Otherwise it reads the due days from the day after its cursor (at most
``LOOKBACK_DAYS`` back when it never ran) up to today, one page at a time, and hands each due guest to
``GuestActions.look``. An entry is dropped once its guest was looked at (the record's new due time has
its own entry, written first), or when the record says it is due later (stale) or is gone. An entry
whose guest is due later today, or whose mark is held by another sweep, stays; a day with such entries
is not finished, so the cursor stops before it. At the end, the reviewers' digests go out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from ..lifecycle.models import utcnow
from ..policy import PolicySource
from ..policy.lifecycle_rules import LifecycleRules
from .acting import GuestActions
from .digest import DigestReport, Digests
from .records import GuestDue
from .register import DAY_FORMAT, GuestRegister, due_day

log = logging.getLogger(__name__)

PAGE: Final = 100
CONCURRENCY: Final = 8  # guests looked at together (their writes are paced by the shared budget all the same)
LOOKBACK_DAYS: Final = 7  # a sweep that never ran reads this many days back (entries are never older than their write)


@dataclass
class SweepReport:
    """What one sweep did."""

    off: bool = False  # no profile has lifecycle rules: nothing was read
    entries: int = 0  # due-index entries read
    looked: int = 0  # guests the rules were applied to
    stale: int = 0  # entries dropped unread (due later, or the record is gone)
    held: int = 0  # guests left for later (due later today, or held by another sweep)
    steps: Counter[str] = field(default_factory=Counter)
    digests: DigestReport = field(default_factory=DigestReport)
    cursor: str | None = None


def _days(start: str, end: str) -> list[str]:
    first = datetime.strptime(start, DAY_FORMAT)
    last = datetime.strptime(end, DAY_FORMAT)
    return [(first + timedelta(days=n)).strftime(DAY_FORMAT) for n in range((last - first).days + 1)]


class GuestSweep:
    """One pass over the due guests; safe to run twice at once (marks and ETags decide who acts)."""

    def __init__(
        self,
        register: GuestRegister,
        actions: GuestActions,
        digests: Digests,
        policy: PolicySource,
        *,
        page: int = PAGE,
        concurrency: int = CONCURRENCY,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._register = register
        self._actions = actions
        self._digests = digests
        self._policy = policy
        self._page = page
        self._concurrency = max(1, concurrency)
        self._clock = clock

    async def sweep(self, *, max_guests: int | None = None) -> SweepReport:
        """Apply the rules to the guests due now (at most ``max_guests``), then send the digests."""
        report = SweepReport()
        policy = await self._policy.current()
        rules = {p.name: p.lifecycle for p in policy.profiles if p.lifecycle is not None}
        if not rules:
            report.off = True
            return report
        now = self._clock()
        today = due_day(now)
        cursor, etag = await self._register.cursor()
        start = (
            due_day(datetime.strptime(cursor, DAY_FORMAT).replace(tzinfo=now.tzinfo) + timedelta(days=1))
            if cursor
            else due_day(now - timedelta(days=LOOKBACK_DAYS))
        )
        finished = True
        for day in _days(start, today) if start <= today else []:
            complete = await self._sweep_day(day, rules, now, report, max_guests)
            finished = finished and complete
            if finished and day < today:
                moved = await self._register.advance(day, etag)
                if moved is None:  # another sweep moved it: it is at work too
                    finished = False
                else:
                    etag, cursor = moved, day
            if max_guests is not None and report.looked >= max_guests:
                break
        report.cursor = cursor
        report.digests = await self._digests.send(self._clock())
        log.info(
            "guests.swept entries=%s looked=%s stale=%s held=%s steps=%s digests=%s",
            report.entries,
            report.looked,
            report.stale,
            report.held,
            dict(report.steps),
            report.digests.sent,
        )
        return report

    async def _sweep_day(
        self,
        day: str,
        rules: dict[str, LifecycleRules],
        now: datetime,
        report: SweepReport,
        max_guests: int | None,
    ) -> bool:
        """Sweep one day's entries; True when none is left for later."""
        token: str | None = None
        complete = True
        while True:
            entries, token = await self._register.due_page(day, self._page, token)
            report.entries += len(entries)
            done: list[GuestDue] = []
            for start in range(0, len(entries), self._concurrency):
                if max_guests is not None and report.looked >= max_guests:
                    return False
                chunk = entries[start : start + self._concurrency]
                if len(chunk) == 1:
                    results = [await self._one(chunk[0], day, rules, now, report)]
                else:  # guests are independent: a chunk's looks overlap their storage and Graph round trips
                    results = list(await asyncio.gather(*(self._one(e, day, rules, now, report) for e in chunk)))
                for entry, (drop, finished) in zip(chunk, results, strict=True):
                    complete = complete and finished
                    if drop:
                        done.append(entry)
            if done:
                await self._register.unschedule(done)
            if token is None:
                return complete

    async def _one(
        self, entry: GuestDue, day: str, rules: dict[str, LifecycleRules], now: datetime, report: SweepReport
    ) -> tuple[bool, bool]:
        """Look at one due entry's guest: (drop the entry, nothing left for later)."""
        record = await self._register.get(entry.user_id)
        if record is None or record.due_at is None or due_day(record.due_at) > day:
            report.stale += 1
            return True, True
        if record.due_at > now:
            report.held += 1
            return False, False
        looked = await self._actions.look(record, rules.get(record.profile or ""))
        if looked is None:
            report.held += 1
            return False, False
        step, after = looked
        report.looked += 1
        report.steps[step.step.value] += 1
        # A new due time's entry was written first; this one goes unless it is the same row.
        if after.due_at is None or due_day(max(after.due_at, now)) != day:
            if after.due_at is not None and after.due_at == record.due_at:
                await self._register.schedule(GuestDue(due_day(max(after.due_at, now)), after.user_id))
            return True, True
        return False, False
