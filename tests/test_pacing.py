"""WritePacer: a shared token bucket that keeps writes inside Graph's budget."""

from __future__ import annotations

import asyncio

import pytest

from shared.graph.pacing import WritePacer


class FakeTime:
    """A clock that moves only when told to, or (advance=True) when someone sleeps on it."""

    def __init__(self, advance: bool = False) -> None:
        self.now = 1000.0
        self.advance = advance
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.advance:
            self.now += seconds
        await asyncio.sleep(0)


def _pacer(t: FakeTime, budget: int = 10, window: float = 5.0, enabled: bool = True) -> WritePacer:
    pacer = WritePacer(budget, window, enabled=enabled, headroom=0.0, clock=t.clock, sleep=t.sleep)
    t.now += window  # let the bucket fill: it starts with one token
    return pacer


async def test_a_full_bucket_lets_the_budget_through_at_once() -> None:
    """Up to `budget` writes need no wait; the next one waits one refill interval."""
    t = FakeTime()
    pacer = _pacer(t)
    waits = [await pacer.acquire() for _ in range(10)]
    assert waits == [0.0] * 10
    assert await pacer.acquire() == pytest.approx(0.5)  # 10 writes / 5 s = one every 0.5 s


async def test_concurrent_callers_get_successive_slots() -> None:
    """Callers waiting together are spaced one refill interval apart, in order."""
    t = FakeTime()
    pacer = _pacer(t, budget=2, window=1.0)
    waits = await asyncio.gather(*(pacer.acquire() for _ in range(6)))
    assert sorted(waits) == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0])


async def test_sustained_rate_matches_the_budget() -> None:
    """Over a long drain the pacer admits budget/window writes per second, no more."""
    t = FakeTime(advance=True)
    pacer = WritePacer(300, 15.0, headroom=0.0, clock=t.clock, sleep=t.sleep)
    for _ in range(2000):
        await pacer.acquire()
    elapsed = t.now - 1000.0
    # It starts with one token, then earns 20 a second.
    assert pytest.approx(elapsed * 20.0, abs=1.0) == 2000 - 1


async def test_a_fresh_pacer_earns_its_burst() -> None:
    """A new process does not assume Graph's bucket is full: one write at once, then the rate."""
    t = FakeTime()
    pacer = WritePacer(10, 5.0, headroom=0.0, clock=t.clock, sleep=t.sleep)
    assert await pacer.acquire() == 0.0
    assert await pacer.acquire() == pytest.approx(0.5)


async def test_sleepers_requeue_after_a_throttle() -> None:
    """Writes already waiting when a 429 arrives do not go ahead before Retry-After."""
    t = FakeTime()
    pacer = _pacer(t, budget=2, window=1.0)
    await pacer.acquire()
    await pacer.acquire()
    gate = asyncio.Event()
    real_sleep = t.sleep

    async def sleep_until_released(seconds: float) -> None:
        await gate.wait()
        await real_sleep(seconds)

    t.sleep = sleep_until_released  # type: ignore[method-assign]
    pacer._sleep = sleep_until_released
    waiter = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0)
    pacer.throttled(10.0)
    t.sleep = real_sleep  # type: ignore[method-assign]
    pacer._sleep = real_sleep
    gate.set()
    waited = await waiter
    assert waited >= 10.0


async def test_throttle_pauses_everyone_for_retry_after() -> None:
    """After a 429 no caller is admitted before Retry-After has passed."""
    t = FakeTime()
    pacer = _pacer(t)
    await pacer.acquire()
    pacer.throttled(7.0)
    first = await pacer.acquire()
    second = await pacer.acquire()
    assert first >= 7.0
    assert second > first


async def test_near_limit_reduces_local_tokens() -> None:
    """Graph's x-ms-throttle-limit-percentage lowers what the pacer believes is left."""
    t = FakeTime()
    pacer = _pacer(t, budget=100, window=100.0)
    pacer.near_limit(95.0)  # 5 writes left
    waits = [await pacer.acquire() for _ in range(6)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] > 0


async def test_disabled_pacer_only_honours_retry_after() -> None:
    """GRAPH_PACING_ENABLED=false drops the budget, but a 429's Retry-After still holds everyone."""
    t = FakeTime()
    pacer = _pacer(t, budget=1, window=100.0, enabled=False)
    assert [await pacer.acquire() for _ in range(5)] == [0.0] * 5
    pacer.throttled(3.0)
    assert await pacer.acquire() == pytest.approx(3.0)


async def test_headroom_keeps_the_pacer_under_the_budget() -> None:
    """By default the pacer keeps 2.5 % of burst and rate back for jitter and other writers."""
    pacer = WritePacer(300, 15.0)
    assert pacer.budget == 292
    assert pacer.rate == pytest.approx(19.5)
    assert WritePacer(20, 1.0).budget == 19  # at least one token of slack
