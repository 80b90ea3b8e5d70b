"""Client-side pacing of Graph writes inside the configured write budget.

Graph allows each app 3,000 writes per 150 s per tenant (identity and access
service). ``WritePacer`` is a token bucket with that capacity and refill rate,
shared by every concurrent invocation in the process: ``acquire`` reserves the
next write slot and sleeps until it is due, so a backlog drains at the budget's
rate instead of provoking 429s.

First come, first served: slots are reserved in the order ``acquire`` is called
and never change order. When Graph throttles anyway (another app, another
instance), ``throttled`` empties the bucket, blocks until ``Retry-After`` has
passed, and moves every reservation still waiting to after the pause, in the
same order; callers that arrive later queue behind them.

Waiting is bounded: ``acquire(max_wait=...)`` raises ``WriteDeferred`` instead of
reserving a slot further away than ``max_wait``, and a waiter whose slot a 429
pushes past its bound is released with ``WriteDeferred`` too (its slot goes to
the callers behind it). Nothing was sent in either case, so the caller can put
the work back on the queue rather than hold a worker.

The bucket starts with a single token: a fresh process cannot know how much of
Graph's budget other instances or earlier runs have spent, so it earns its
burst at the budget's rate like everybody else.

Everything that changes the schedule is synchronous (no ``await`` inside), so it
is atomic on the one event loop that shares the pacer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from ..errors import WriteDeferred

log = logging.getLogger(__name__)

# A 429 without Retry-After still tells us Graph's bucket is empty. A throttled call costs
# Graph a token too, so coming back at once only digs deeper: wait at least a second (what
# Graph's own guidance starts backing off from) and never less than a few refill intervals,
# so the bucket holds something when the pause ends.
MIN_THROTTLE_PAUSE: Final = 1.0
MIN_THROTTLE_INTERVALS: Final = 3


@dataclass(eq=False)
class _Reservation:
    """One caller's reserved slot, still waiting; ``due`` moves when Graph throttles."""

    started: float
    due: float
    max_wait: float | None
    deferred: float | None = None  # where a 429 pushed the slot, when that is past max_wait
    moved: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the waiter early


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
        self._tokens = 1.0  # negative: slots reserved by callers still waiting
        self._stamp = clock()
        self._blocked_until = 0.0
        self._waiting: list[_Reservation] = []  # in reservation order

    @property
    def interval(self) -> float:
        """Seconds between two writes at the paced rate."""
        return 1.0 / self.rate

    def _refill(self, now: float) -> None:
        # Nothing accrues while Graph has told us to wait.
        start = max(self._stamp, self._blocked_until)
        if now > start:
            self._tokens = min(float(self.budget), self._tokens + (now - start) * self.rate)
        self._stamp = max(now, self._stamp)

    def _due(self, now: float, tokens_after: float) -> float:
        return max(now, self._blocked_until) + max(0.0, -tokens_after) / self.rate

    def estimate(self) -> float:
        """Seconds until a write reserved now would be due (reserves nothing)."""
        now = self._clock()
        if not self.enabled:
            return max(0.0, self._blocked_until - now)
        self._refill(now)
        return self._due(now, self._tokens - 1.0) - now

    async def acquire(self, max_wait: float | None = None) -> float:
        """Wait for the next write slot, first come first served; return the seconds waited.

        Raise ``WriteDeferred`` (nothing reserved, nothing sent) when the slot is more
        than ``max_wait`` seconds away, or a 429 pushes it there while waiting.
        """
        now = self._clock()
        if not self.enabled:
            return await self._wait_unpaced(now, max_wait)
        self._refill(now)
        due = self._due(now, self._tokens - 1.0)
        if max_wait is not None and due - now > max_wait:
            raise WriteDeferred(retry_after=due - now)
        self._tokens -= 1.0
        if due <= now:
            return 0.0
        slot = _Reservation(started=now, due=due, max_wait=max_wait)
        self._waiting.append(slot)
        try:
            while slot.deferred is None:
                wait = slot.due - self._clock()
                if wait <= 0:
                    self._waiting.remove(slot)
                    return self._clock() - now
                await self._nap(slot, wait)
        except BaseException:
            if slot in self._waiting:
                # Cancelled while waiting: the slot goes to the callers behind.
                self._release(slot)
            raise
        raise WriteDeferred(retry_after=max(0.0, slot.deferred - self._clock()))

    async def _nap(self, slot: _Reservation, seconds: float) -> None:
        """Sleep until the slot is due, or until a release or a deferral moves it."""
        slot.moved.clear()
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        mover = asyncio.ensure_future(slot.moved.wait())
        try:
            await asyncio.wait((sleeper, mover), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            mover.cancel()

    async def _wait_unpaced(self, now: float, max_wait: float | None) -> float:
        # No budget of our own, but Graph's Retry-After is honoured all the same.
        while (pause := self._blocked_until - self._clock()) > 0:
            if max_wait is not None and self._clock() + pause - now > max_wait:
                raise WriteDeferred(retry_after=pause)
            await self._sleep(pause)
        return self._clock() - now

    def _release(self, slot: _Reservation) -> None:
        """Forget a waiting reservation; everyone behind it moves up one slot."""
        index = self._waiting.index(slot)
        del self._waiting[index]
        self._tokens += 1.0
        for later in self._waiting[index:]:
            later.due -= self.interval
            later.moved.set()

    def throttled(self, retry_after: float | None) -> None:
        """Graph answered 429: pause for ``retry_after`` seconds; waiting callers keep their order behind it."""
        now = self._clock()
        if retry_after is not None and retry_after > 0:
            pause = retry_after
        else:
            pause = max(MIN_THROTTLE_PAUSE, MIN_THROTTLE_INTERVALS * self.interval)
        self._refill(now)
        self._blocked_until = max(self._blocked_until, now + pause)
        self._stamp = max(self._stamp, now)
        # Empty bucket; the waiters' reservations are re-issued after the pause, in order.
        kept: list[_Reservation] = []
        deferred = 0
        for slot in self._waiting:
            due = self._blocked_until + (len(kept) + 1) * self.interval
            if slot.max_wait is not None and due - slot.started > slot.max_wait:
                slot.deferred = due
                slot.moved.set()
                deferred += 1
                continue
            slot.due = due
            kept.append(slot)
        self._waiting = kept
        self._tokens = -float(len(kept))
        log.warning(
            "graph.throttled retry_after=%.1f pacing=%s waiting=%s deferred=%s",
            pause,
            self.enabled,
            len(kept),
            deferred,
        )

    def near_limit(self, fraction: float) -> None:
        """Graph reported ``x-ms-throttle-limit-percentage`` (a fraction, 0.8 to 1.8): keep only what is left.

        At 1.0 or more the limit is reached or exceeded: no token is left.
        """
        if not fraction > 0:
            return
        remaining = max(0.0, 1.0 - fraction) * self.budget
        self._refill(self._clock())
        if self._tokens > remaining:
            self._tokens = remaining
