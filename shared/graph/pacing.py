"""Client-side pacing of Graph writes inside the configured write budget.

Graph allows each app 3,000 writes per 150 s per tenant (identity and access
service). ``WritePacer`` is a token bucket with that capacity and refill rate,
shared by every concurrent invocation in the process: ``acquire`` reserves the
next write slot and sleeps until it is due, so a backlog drains at the budget's
rate instead of provoking 429s. When Graph throttles anyway (another app, another
instance), ``throttled`` empties the bucket and blocks every caller until
``Retry-After`` has passed.

Reservations are handed out in order under one lock, so waiting callers are
served first come, first served; the sleep happens outside the lock. A caller
that was asleep when a 429 arrived takes a new slot after the pause instead of
going ahead on its old one.

The bucket starts with a single token: a fresh process cannot know how much of
Graph's budget other instances or earlier runs have spent, so it earns its
burst at the budget's rate like everybody else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class WritePacer:
    """A token bucket of ``budget`` writes refilled evenly over ``window`` seconds.

    ``headroom`` (default 2.5 %) is kept back from both the burst and the rate: a
    client that paces at exactly Graph's refill rate meets a 429 whenever network
    jitter lands a request a moment before its token exists at Graph.
    """

    def __init__(
        self,
        budget: int,
        window: float,
        *,
        enabled: bool = True,
        headroom: float = 0.025,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if budget <= 0 or window <= 0 or not 0 <= headroom < 1:
            raise ValueError("budget and window must be positive, headroom in [0, 1)")
        self.window = window
        self.enabled = enabled
        self.budget = max(1, min(budget - 1, int(budget * (1 - headroom)))) if headroom else budget
        self.rate = budget * (1 - headroom) / window  # writes per second
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0
        self._stamp = clock()
        self._blocked_until = 0.0
        self._throttles = 0  # bumped by every 429; a sleeper that sees it change re-queues
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        # Nothing accrues while Graph has told us to wait.
        start = max(self._stamp, self._blocked_until)
        if now > start:
            self._tokens = min(float(self.budget), self._tokens + (now - start) * self.rate)
        self._stamp = max(now, self._stamp)

    async def acquire(self) -> float:
        """Wait for one write slot; return how long this caller waited, in seconds."""
        if not self.enabled:
            # No budget of our own, but Graph's Retry-After is honoured all the same.
            pause = self._blocked_until - self._clock()
            if pause > 0:
                await self._sleep(pause)
            return max(pause, 0.0)
        waited = 0.0
        while True:
            async with self._lock:
                now = self._clock()
                self._refill(now)
                self._tokens -= 1.0
                generation = self._throttles
                # Negative tokens are slots reserved by callers still asleep; refill
                # resumes only once Graph's Retry-After has passed.
                due = max(now, self._blocked_until) + max(0.0, -self._tokens) / self.rate
            wait = due - now
            if wait <= 0:
                return waited
            await self._sleep(wait)
            waited += wait
            if generation == self._throttles:
                return waited

    def throttled(self, retry_after: float | None) -> None:
        """Graph answered 429: pause every caller for ``retry_after`` seconds and empty the bucket."""
        now = self._clock()
        pause = retry_after if retry_after and retry_after > 0 else 1.0 / self.rate
        self._refill(now)
        # Every sleeper re-queues (see acquire), so their old reservations are forgotten.
        self._tokens = 0.0
        self._throttles += 1
        self._blocked_until = max(self._blocked_until, now + pause)
        log.warning("graph.throttled retry_after=%.1f pacing=%s", pause, self.enabled)

    def near_limit(self, percentage: float) -> None:
        """Graph reported ``x-ms-throttle-limit-percentage``: drop local tokens to what is left."""
        if percentage <= 0:
            return
        remaining = max(0.0, 1.0 - percentage / 100.0) * self.budget
        now = self._clock()
        self._refill(now)
        if self._tokens > remaining:
            self._tokens = remaining
