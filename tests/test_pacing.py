"""WritePacer: a shared token bucket that keeps writes inside Graph's budget, first come first served."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from shared.errors import WriteDeferred
from shared.graph.pacing import WritePacer

T = TypeVar("T")


class VirtualTime:
    """A clock that moves only when the test lets it; sleepers wake in time order, as with a real loop."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    @staticmethod
    async def settle() -> None:
        """Let every runnable task run until it blocks again."""
        for _ in range(10):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move the clock forward, waking each sleeper at its own time."""
        end = self.now + seconds
        await self.settle()
        while self._timers and self._timers[0][0] <= end:
            when, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)
            await self.settle()
        self.now = end

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await one call, moving the clock from timer to timer until it is done."""
        task = asyncio.ensure_future(awaitable)
        await self.settle()
        while not task.done():
            if not self._timers:
                raise AssertionError("the call blocks with no timer that could wake it")
            await self.advance(self._timers[0][0] - self.now)
        return task.result()


def _pacer(t: VirtualTime, budget: int = 10, window: float = 5.0, enabled: bool = True) -> WritePacer:
    pacer = WritePacer(budget, window, enabled=enabled, headroom=0.0, clock=t.clock, sleep=t.sleep)
    t.now += window  # let the bucket fill: it starts with one token
    return pacer


def _start(t: VirtualTime, pacer: WritePacer, name: str, log: list[tuple[str, float]], **kw: Any) -> asyncio.Task[Any]:
    async def call() -> float:
        waited = await pacer.acquire(**kw)
        log.append((name, t.now))
        return waited

    return asyncio.ensure_future(call())


async def _drain(t: VirtualTime, tasks: list[asyncio.Task[Any]]) -> None:
    await t.run(asyncio.gather(*tasks, return_exceptions=True))


async def test_a_full_bucket_lets_the_budget_through_at_once() -> None:
    """Up to `budget` writes need no wait; the next one waits one refill interval."""
    t = VirtualTime()
    pacer = _pacer(t)
    waits = [await t.run(pacer.acquire()) for _ in range(10)]
    assert waits == [0.0] * 10
    assert await t.run(pacer.acquire()) == pytest.approx(0.5)  # 10 writes / 5 s = one every 0.5 s


async def test_concurrent_callers_get_successive_slots_in_order() -> None:
    """Callers waiting together are spaced one refill interval apart, in the order they asked."""
    t = VirtualTime()
    pacer = _pacer(t, budget=2, window=1.0)
    log: list[tuple[str, float]] = []
    tasks = [_start(t, pacer, str(i), log) for i in range(6)]
    await _drain(t, tasks)
    assert [name for name, _ in log] == ["0", "1", "2", "3", "4", "5"]
    assert [at - 1001.0 for _, at in log] == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0])


async def test_sustained_rate_matches_the_budget() -> None:
    """Over a long drain the pacer admits budget/window writes per second, no more."""
    t = VirtualTime()
    pacer = WritePacer(300, 15.0, headroom=0.0, clock=t.clock, sleep=t.sleep)
    for _ in range(2000):
        await t.run(pacer.acquire())
    elapsed = t.now - 1000.0
    # It starts with one token, then earns 20 a second.
    assert pytest.approx(elapsed * 20.0, abs=1.0) == 2000 - 1


async def test_a_fresh_pacer_earns_its_burst() -> None:
    """A new process does not assume Graph's bucket is full: one write at once, then the rate."""
    t = VirtualTime()
    pacer = WritePacer(10, 5.0, headroom=0.0, clock=t.clock, sleep=t.sleep)
    assert await t.run(pacer.acquire()) == 0.0
    assert await t.run(pacer.acquire()) == pytest.approx(0.5)


async def test_waiters_keep_their_order_across_a_429_and_late_arrivals_queue_behind() -> None:
    """Callers waiting when a 429 arrives go after Retry-After in their order; later callers never overtake."""
    t = VirtualTime()
    pacer = _pacer(t, budget=2, window=1.0)
    await t.run(pacer.acquire())
    await t.run(pacer.acquire())  # bucket empty
    log: list[tuple[str, float]] = []
    early = [_start(t, pacer, f"early{i}", log) for i in range(3)]
    await t.advance(0.1)
    throttled_at = t.now
    pacer.throttled(10.0)
    late = [_start(t, pacer, f"late{i}", log) for i in range(2)]
    await _drain(t, early + late)
    assert [name for name, _ in log] == ["early0", "early1", "early2", "late0", "late1"]
    times = [at - throttled_at for _, at in log]
    assert times == pytest.approx([10.5, 11.0, 11.5, 12.0, 12.5])  # one interval apart after the pause


async def test_repeated_429s_delay_waiters_only_by_the_pauses() -> None:
    """A waiter is not sent to the back by each 429: its wait is the pauses plus its place in the queue."""
    t = VirtualTime()
    pacer = _pacer(t, budget=2, window=1.0)
    await t.run(pacer.acquire())
    await t.run(pacer.acquire())
    log: list[tuple[str, float]] = []
    tasks = [_start(t, pacer, f"w{i}", log) for i in range(4)]
    start = t.now
    for _ in range(3):
        await t.advance(0.25)
        pacer.throttled(2.0)
    await _drain(t, tasks)
    assert [name for name, _ in log] == ["w0", "w1", "w2", "w3"]
    last_pause_end = start + 0.75 + 2.0
    assert [at - last_pause_end for _, at in log] == pytest.approx([0.5, 1.0, 1.5, 2.0])


async def test_max_wait_defers_without_reserving_a_slot() -> None:
    """acquire(max_wait) raises WriteDeferred with the estimated wait and leaves the queue as it was."""
    t = VirtualTime()
    pacer = _pacer(t, budget=2, window=1.0)
    await t.run(pacer.acquire())
    await t.run(pacer.acquire())
    with pytest.raises(WriteDeferred) as info:
        await t.run(pacer.acquire(max_wait=0.4))
    assert info.value.retry_after == pytest.approx(0.5)
    assert info.value.code == "WriteDeferred"
    assert pacer.estimate() == pytest.approx(0.5)
    assert await t.run(pacer.acquire(max_wait=0.5)) == pytest.approx(0.5)  # the slot nobody took


async def test_a_429_that_pushes_a_waiter_past_its_bound_defers_it_and_moves_the_rest_up() -> None:
    """A waiter with max_wait is released with WriteDeferred when a 429 would make it wait longer."""
    t = VirtualTime()
    pacer = _pacer(t, budget=2, window=1.0)
    await t.run(pacer.acquire())
    await t.run(pacer.acquire())
    log: list[tuple[str, float]] = []
    a = _start(t, pacer, "a", log)
    b = _start(t, pacer, "b", log, max_wait=3.0)
    c = _start(t, pacer, "c", log)
    await t.settle()
    throttled_at = t.now
    pacer.throttled(5.0)
    await _drain(t, [a, b, c])
    assert [name for name, _ in log] == ["a", "c"]
    assert [at - throttled_at for _, at in log] == pytest.approx([5.5, 6.0])  # c took b's slot
    error = b.exception()
    assert isinstance(error, WriteDeferred)
    assert error.retry_after == pytest.approx(6.0)  # told at once, with the slot it would have had


async def test_a_cancelled_waiter_gives_its_slot_to_the_next() -> None:
    """A caller that stops waiting does not leave a hole in the schedule."""
    t = VirtualTime()
    pacer = _pacer(t, budget=2, window=1.0)
    await t.run(pacer.acquire())
    await t.run(pacer.acquire())
    log: list[tuple[str, float]] = []
    a, b = _start(t, pacer, "a", log), _start(t, pacer, "b", log)
    await t.settle()
    start = t.now
    a.cancel()
    await _drain(t, [a, b])
    assert log == [("b", pytest.approx(start + 0.5))]


async def test_throttle_pauses_everyone_for_retry_after() -> None:
    """After a 429 no caller is admitted before Retry-After has passed."""
    t = VirtualTime()
    pacer = _pacer(t)
    await t.run(pacer.acquire())
    pacer.throttled(7.0)
    first = await t.run(pacer.acquire())
    second = await t.run(pacer.acquire())
    assert first >= 7.0
    assert second > 0


@pytest.mark.parametrize(
    ("budget", "window", "pause"),
    [
        pytest.param(3000, 150.0, 1.0, id="graph-budget-one-second"),
        pytest.param(10, 100.0, 30.0, id="slow-budget-three-intervals"),
    ],
)
async def test_a_429_without_retry_after_still_pauses(budget: int, window: float, pause: float) -> None:
    """With no Retry-After the pause is at least 1 s and at least three refill intervals."""
    t = VirtualTime()
    pacer = _pacer(t, budget=budget, window=window)
    pacer.throttled(None)
    waited = await t.run(pacer.acquire())
    assert waited >= pause
    assert waited == pytest.approx(pause + window / budget)


@pytest.mark.parametrize(
    ("fraction", "free"),
    [
        pytest.param(0.95, 5, id="95-percent-used"),
        pytest.param(0.8, 20, id="80-percent-used"),
        pytest.param(1.0, 0, id="at-the-limit"),
        pytest.param(1.6, 0, id="over-the-limit"),
    ],
)
async def test_near_limit_reads_graphs_fraction(fraction: float, free: int) -> None:
    """x-ms-throttle-limit-percentage is a fraction (0.8 to 1.8): what is left is (1 - fraction) of the budget."""
    t = VirtualTime()
    pacer = _pacer(t, budget=100, window=100.0)
    pacer.near_limit(fraction)
    waits = [await t.run(pacer.acquire()) for _ in range(free + 1)]
    assert waits[:free] == [0.0] * free
    assert waits[free] == pytest.approx(1.0)


async def test_disabled_pacer_only_honours_retry_after() -> None:
    """GRAPH_PACING_ENABLED=false drops the budget, but a 429's Retry-After still holds everyone (within max_wait)."""
    t = VirtualTime()
    pacer = _pacer(t, budget=1, window=100.0, enabled=False)
    assert [await t.run(pacer.acquire()) for _ in range(5)] == [0.0] * 5
    pacer.throttled(3.0)
    with pytest.raises(WriteDeferred) as info:
        await t.run(pacer.acquire(max_wait=2.0))
    assert info.value.retry_after == pytest.approx(3.0)
    assert await t.run(pacer.acquire()) == pytest.approx(3.0)


async def test_headroom_keeps_the_pacer_under_the_budget() -> None:
    """By default the pacer keeps 2.5 % of burst and rate back for jitter and other writers."""
    pacer = WritePacer(300, 15.0)
    assert pacer.budget == 292
    assert pacer.rate == pytest.approx(19.5)
    assert WritePacer(20, 1.0).budget == 19  # at least one token of slack


async def _scenario(seed: int) -> None:
    """One random mix of arrivals (some with max_wait), 429s with and without Retry-After, and time passing."""
    rng = random.Random(seed)
    t = VirtualTime()
    budget, window = rng.choice([(2, 1.0), (5, 2.0), (10, 1.0)])
    pacer = WritePacer(budget, window, headroom=0.0, clock=t.clock, sleep=t.sleep)
    seq = itertools.count()
    arrivals: list[tuple[int, str, float | None]] = []  # (seq, name, max_wait)
    grants: list[tuple[int, str, float, float]] = []  # (seq, name, time, waited)
    deferred: list[tuple[str, float | None]] = []
    blocks: list[tuple[int, float, float]] = []  # (seq, from, until)
    tasks: list[asyncio.Task[Any]] = []

    async def caller(name: str, max_wait: float | None) -> None:
        arrivals.append((next(seq), name, max_wait))
        try:
            waited = await pacer.acquire(max_wait=max_wait)
        except WriteDeferred as exc:
            deferred.append((name, exc.retry_after))
            return
        grants.append((next(seq), name, t.now, waited))

    for step in range(60):
        roll = rng.random()
        if roll < 0.6:
            max_wait = rng.choice([None, None, 0.5, 2.0, 5.0])
            tasks.append(asyncio.ensure_future(caller(f"c{step}", max_wait)))
            await t.settle()
        elif roll < 0.7:
            retry_after = rng.choice([None, 0.5, 2.0, 4.0])
            before = t.now
            pacer.throttled(retry_after)
            blocks.append((next(seq), before, pacer._blocked_until))
        else:
            await t.advance(rng.choice([0.05, 0.3, 1.0]))
    await _drain(t, tasks)

    limits = dict((name, max_wait) for _, name, max_wait in arrivals)
    order = [name for _, name, _ in arrivals]
    granted = [name for _, name, _, _ in grants]
    # First come, first served: the granted callers went in the order they arrived.
    assert granted == [name for name in order if name in set(granted)], seed
    # Everyone is accounted for, and nobody waited past their own bound.
    assert len(granted) + len(deferred) == len(arrivals), seed
    for _, name, _, waited in grants:
        bound = limits[name]
        assert bound is None or waited <= bound + 1e-9, (seed, name, waited, bound)
    for _, retry_after in deferred:
        assert retry_after is not None and retry_after >= 0, seed
    # Nobody was admitted while Graph's Retry-After was running.
    for block_seq, start, until in blocks:
        for grant_seq, name, at, _ in grants:
            assert not (grant_seq > block_seq and start <= at < until - 1e-9), (seed, name, at, start, until)
    # Never more than the bucket allows: burst plus refill over any span.
    times = [at for _, _, at, _ in grants]
    for i, j in itertools.combinations(range(len(times)), 2):
        assert j - i + 1 <= budget + (times[j] - times[i]) * pacer.rate + 1e-6, (seed, i, j)


@pytest.mark.parametrize("block", range(4))
async def test_property_fifo_bounded_and_within_budget(block: int) -> None:
    """Across 200 random schedules: FCFS order, waits within max_wait, no grant during a pause, the budget held."""
    for seed in range(block * 50, block * 50 + 50):
        await _scenario(seed)
