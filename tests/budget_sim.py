"""Drains of the shared write budget in virtual time, against Graph's limit read as a strict token bucket.

Three instances (each a ``SharedGate`` with eight concurrent invocations) drain a backlog against a plain
token bucket of 150 writes per 15 s, full at start, refilled continuously, never below zero. The store is an
in-memory one with real ETag semantics and a few virtual milliseconds per call. ``tests/test_budget.py``
asserts on these drains; ``python -m tests.budget_sim`` prints their figures for the three cases
(fresh storage, the state a previous drain left, a warm-up then idle), with and without clock skew.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
import random

from shared.errors import StorageError
from shared.graph.budget import BucketState, SharedBucket, SharedGate


class FakeBudgetStore:
    """``BudgetStore`` in memory: writes succeed only with the ETag last read; can be made unreachable."""

    def __init__(self) -> None:
        self.states: dict[str, BucketState] = {}
        self._etags = itertools.count(1)
        self.down = False
        self.writes = 0

    async def read(self, name: str) -> BucketState | None:
        await asyncio.sleep(0)
        if self.down:
            raise StorageError("unreachable")
        return self.states.get(name)

    async def write(self, name: str, state: BucketState) -> str | None:
        await asyncio.sleep(0)  # another instance may run between our read and our write
        if self.down:
            raise StorageError("unreachable")
        current = self.states.get(name)
        if (current.etag if current else None) != state.etag:
            return None
        etag = f"e{next(self._etags)}"
        self.states[name] = BucketState(state.tat, state.blocked_until, etag)
        self.writes += 1
        return etag


BUDGET, WINDOW = 150, 15.0


class VirtualTime:
    """Virtual time for many concurrent tasks: each sleeper wakes at its moment, in order, without waiting."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    async def run(self, tasks: list[asyncio.Task[None]]) -> None:
        """Advance time from sleeper to sleeper until every task is done."""
        while not all(t.done() for t in tasks):
            for _ in range(20):  # let everything that can run without time passing run
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].cancelled():
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                break
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            future.set_result(None)
        for task in tasks:
            task.result()


class StrictGraphBucket:
    """Graph's write limit, strictly: full at start, refilled continuously, never below zero."""

    def __init__(self, time: VirtualTime) -> None:
        self.rate = BUDGET / WINDOW
        self.tokens, self.stamp, self._time = float(BUDGET), time.now, time

    def take(self) -> float | None:
        """One write now: None when allowed, else the Retry-After (a throttled call costs nothing)."""
        now = self._time.now
        self.tokens = min(float(BUDGET), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return math.ceil((1.0 - self.tokens) / self.rate)


class SlowStore(FakeBudgetStore):
    """The fake store, each call taking a few virtual milliseconds (so instances race as they do on Azurite)."""

    def __init__(self, time: VirtualTime) -> None:
        super().__init__()
        self._time = time

    async def read(self, name: str) -> BucketState | None:
        await self._time.sleep(0.004)
        return await super().read(name)

    async def write(self, name: str, state: BucketState) -> str | None:
        await self._time.sleep(0.004)
        return await super().write(name, state)


def instances(store: FakeBudgetStore, time: VirtualTime, skews: tuple[float, ...]) -> list[SharedGate]:
    """New processes, one per clock skew (seconds their clock runs ahead of the true time)."""
    gates = []
    for seed, skew in enumerate(skews):
        clock = lambda skew=skew: time.now + skew  # noqa: E731 - one clock per instance
        rng = random.Random(seed)
        bucket = SharedBucket(store, "writes", BUDGET, WINDOW, clock=clock, sleep=time.sleep, jitter=rng.random)
        gates.append(SharedGate({"writes": bucket}, clock=clock, sleep=time.sleep))
    return gates


async def drain(time: VirtualTime, graph: StrictGraphBucket, gates: list[SharedGate], count: int) -> dict[str, float]:
    """Eight invocations per instance write ``count`` times (200-250 ms to reach Graph); what Graph saw."""
    rng = random.Random(count)
    backlog, answers = list(range(count)), []
    done = 0

    async def invocation(gate: SharedGate) -> None:
        nonlocal done
        while done < count:
            if not backlog:
                await time.sleep(0.05)
                continue
            item = backlog.pop()
            await gate.acquire(["writes"])
            await time.sleep(0.2 + 0.05 * rng.random())
            retry_after = graph.take()
            answers.append((time.now, retry_after is None))
            if retry_after is None:
                done += 1
            else:
                backlog.append(item)
                await gate.throttled(retry_after)

    await time.run([asyncio.create_task(invocation(g)) for g in gates for _ in range(8)])
    first, last = answers[0][0], answers[-1][0]
    late = [at for at, ok in answers if ok and at > first + WINDOW]
    return {
        "throttled": sum(1 for _, ok in answers if not ok),
        "throttled_in_first_window": sum(1 for at, ok in answers if not ok and at <= first + WINDOW),
        "fraction_after_first_window": round(len(late) / (last - first - WINDOW) / (BUDGET / WINDOW), 3),
    }


async def cases(skews: tuple[float, ...]) -> dict[str, dict[str, float]]:
    """The three cases' last drains: fresh storage, new processes 30 s after a drain, the same after 25 s idle."""
    figures = {}
    time = VirtualTime()
    store, graph = SlowStore(time), StrictGraphBucket(time)
    figures["fresh"] = await drain(time, graph, instances(store, time, skews), 600)
    time.now += 30
    figures["leftover"] = await drain(time, graph, instances(store, time, skews), 600)
    time = VirtualTime()
    gates, graph = instances(SlowStore(time), time, skews), StrictGraphBucket(time)
    await drain(time, graph, gates, 30)
    time.now += 25
    figures["idle"] = await drain(time, graph, gates, 600)
    return figures


if __name__ == "__main__":
    for skews in ((0.0, 0.0, 0.0), (-0.15, 0.0, 0.15)):
        for case, figures in asyncio.run(cases(skews)).items():
            print(json.dumps({"case": case, "clock_skews": skews, **figures}))
