"""WritePacer: a shared token bucket that keeps writes inside Graph's budget."""

from __future__ import annotations

import asyncio

import pytest

from shared.pacing import WritePacer


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


def _pacer(t: FakeTime, budget: int = 10, window: float = 5.0, enabled: bool = True) -> WritePacer:
    return WritePacer(budget, window, enabled=enabled, headroom=0.0, clock=t.clock, sleep=t.sleep)


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
    t = FakeTime()
    pacer = _pacer(t, budget=300, window=15.0)
    admitted = 0
    for _ in range(2000):
        wait = await pacer.acquire()
        t.now += wait
        admitted += 1
    elapsed = t.now - 1000.0
    # 300 free at start, then 20/s.
    assert admitted - 300 == pytest.approx(elapsed * 20.0, abs=1.0)


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


async def test_disabled_pacer_never_waits() -> None:
    """GRAPH_PACING_ENABLED=false turns pacing off entirely."""
    t = FakeTime()
    pacer = _pacer(t, budget=1, window=100.0, enabled=False)
    assert [await pacer.acquire() for _ in range(5)] == [0.0] * 5


async def test_headroom_keeps_the_pacer_under_the_budget() -> None:
    """By default the pacer keeps 2.5 % of burst and rate back for jitter and other writers."""
    t = FakeTime()
    pacer = WritePacer(300, 15.0, clock=t.clock, sleep=t.sleep)
    assert pacer.budget == 292
    assert pacer.rate == pytest.approx(19.5)
    assert WritePacer(20, 1.0).budget == 19  # at least one token of slack
