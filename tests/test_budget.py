"""The shared write budget: ETag-guarded token buckets over a fake store with real ETag semantics, and Azurite."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from azure.data.tables.aio import TableClient

from shared.errors import WriteDeferred
from shared.graph.budget import BucketState, Grant, SharedBucket, SharedGate, TableBudgetStore
from shared.settings import Settings
from shared.storage import build_table_client
from tests.budget_sim import (
    BUDGET,
    WINDOW,
    FakeBudgetStore,
    SlowStore,
    StrictGraphBucket,
    VirtualTime,
    drain,
    instances,
)


class FakeTime:
    """A clock shared by every simulated instance; sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def _bucket(store: FakeBudgetStore, clock: FakeTime, **kwargs: float) -> SharedBucket:
    return SharedBucket(store, "writes", 150, 15.0, clock=clock, sleep=clock.sleep, jitter=lambda: 0.5, **kwargs)


async def test_instances_together_stay_inside_the_budget() -> None:
    """Three instances, each wanting twice the whole budget, reserve batches when their local tokens run out,
    in no fixed order: together they get the budget's rate and no more, each a fair part, and storage calls
    stay a small fraction of the writes."""
    rng = random.Random(7)
    store, clock = FakeBudgetStore(), FakeTime()
    instances = [_bucket(store, clock) for _ in range(3)]
    local, usable, wake, done = [0, 0, 0], [0.0] * 3, [0.0] * 3, [0, 0, 0]
    rate = instances[0].rate
    start = clock.now
    for _ in range(6000):  # 60 s in 10 ms ticks; each instance wants a write every other tick
        for i in rng.sample(range(3), 3):
            if local[i] == 0 and clock.now >= wake[i]:
                grant = await instances[i].take(instances[i].max_batch)
                local[i], usable[i], wake[i] = grant.tokens, grant.start + 1 / rate, grant.retry_at
            if local[i] > 0 and clock.now >= usable[i]:  # each slot is spent at its end
                local[i] -= 1
                usable[i] += 1 / rate
                done[i] += 1
                wake[i] = clock.now
        clock.now += 0.01
    elapsed = clock.now - start
    assert sum(done) <= rate * elapsed  # fresh storage: an empty bucket, and never a write before its slot
    assert sum(done) >= 0.95 * rate * elapsed
    assert min(done) > 0.25 * sum(done)  # nobody starved
    assert sum(b.storage_calls for b in instances) < 0.5 * sum(done)


async def test_concurrent_reservations_never_overlap() -> None:
    """Concurrent takes lose ETag races and retry; the batches granted are consecutive, never shared."""
    store, clock = FakeBudgetStore(), FakeTime()
    instances = [_bucket(store, clock) for _ in range(5)]
    grants = sorted(await asyncio.gather(*(b.take(7) for b in instances)), key=lambda g: g.start)
    assert [g.tokens for g in grants] == [7] * 5
    rate = instances[0].rate
    for earlier, later in itertools.pairwise(grants):
        assert later.start >= earlier.start + 7 / rate - 1e-9


async def test_reservations_stop_at_the_horizon_and_say_when_to_come_back() -> None:
    """Nobody reserves further ahead than the horizon; a refused take says when to ask again."""
    store, clock = FakeBudgetStore(), FakeTime()
    bucket = _bucket(store, clock)
    grants = [await bucket.take(bucket.max_batch) for _ in range(10)]
    refused = [g for g in grants if g.tokens == 0]
    assert refused and all(g.start - clock.now > bucket.horizon for g in refused)
    assert all(g.retry_at == pytest.approx(g.start - bucket.horizon) for g in refused)


async def test_a_429_anywhere_pauses_everyone() -> None:
    """One instance records Graph's Retry-After; another's next slot starts only after it."""
    store, clock = FakeBudgetStore(), FakeTime()
    first, second = _bucket(store, clock), _bucket(store, clock)
    assert (await second.take(5)).tokens == 5
    until = clock.now + 30
    await first.block(until)
    grant = await second.take(5)
    assert grant.tokens == 0 and grant.retry_at == pytest.approx(until - second.horizon)
    clock.now = until
    grant = await second.take(5)
    assert grant.tokens == 5 and grant.start >= until


async def test_storage_unreachable_falls_back_to_a_conservative_local_share() -> None:
    """With storage down, writes go on at the fallback share of the rate; back to shared when it returns."""
    store, clock = FakeBudgetStore(), FakeTime()
    bucket = _bucket(store, clock, fallback_fraction=0.25)
    store.down = True
    granted = 0
    for _ in range(100):
        grant = await bucket.take(100)
        assert not grant.shared
        granted += grant.tokens
        clock.now += 0.1
    assert granted == pytest.approx(bucket.fallback_rate * 10, abs=2)
    store.down = False
    assert (await bucket.take(5)).shared


async def test_a_dead_instance_holds_at_most_a_batch() -> None:
    """A take is capped at about a second of the rate, all an instance that dies can take with it."""
    store, clock = FakeBudgetStore(), FakeTime()
    bucket = _bucket(store, clock)
    assert (await bucket.take(10_000)).tokens == bucket.max_batch == 10


async def test_idle_time_becomes_burst_up_to_the_bucket_size() -> None:
    """After a window of quiet the model's bucket is full (Graph's refilled), but never more than its size:
    a burst of the whole capacity is usable at once, the next batch only at the rate."""
    store, clock = FakeBudgetStore(), FakeTime()
    bucket = _bucket(store, clock)
    await bucket.take(1)
    clock.now += 3600
    burst = [await bucket.take(10) for _ in range(int(bucket.capacity) // 10)]
    assert all(g.tokens == 10 and g.start + 10 / bucket.rate <= clock.now for g in burst)
    after = await bucket.take(10)
    assert after.tokens == 10 and after.start + 10 / bucket.rate > clock.now
    assert after.start == pytest.approx(clock.now - bucket.window + len(burst) * 10 / bucket.rate)


class CountingBucket(SharedBucket):
    """A shared bucket that counts the slots storage granted it."""

    granted = 0

    async def take(self, want: int) -> Grant:
        grant = await super().take(want)
        self.granted += grant.tokens
        return grant


async def test_a_429_while_invocations_wait_leaves_no_write_unmetered() -> None:
    """One invocation waits for its slot when another meets a 429: every write afterwards still comes out of
    a batch taken from storage (the gate never counts a pool below zero and then reads that as slots held)."""
    time = VirtualTime()
    bucket = CountingBucket(SlowStore(time), "writes", BUDGET, WINDOW, clock=time, sleep=time.sleep)
    gate = SharedGate({"writes": bucket}, clock=time, sleep=time.sleep)
    writes = 0

    async def invocation() -> None:
        nonlocal writes
        for _ in range(25):
            await gate.acquire(["writes"])
            writes += 1

    async def meets_a_429() -> None:
        await time.sleep(0.05)  # while the other waits for the first slot of its batch
        await gate.throttled(1.0)

    await time.run([asyncio.create_task(invocation()), asyncio.create_task(meets_a_429())])
    assert writes == 25 and bucket.granted >= writes


@pytest.fixture
async def table(settings: Settings):  # type: ignore[no-untyped-def]
    client: TableClient = build_table_client(settings)
    yield client
    await client.close()


async def test_table_store_guards_writes_with_etags(table: TableClient) -> None:
    """Against Azurite: insert once, update only with the ETag read, read back what was written."""
    store = TableBudgetStore(table)
    assert await store.read("writes") is None
    etag = await store.write("writes", BucketState(100.0))
    assert etag is not None
    assert await store.write("writes", BucketState(90.0)) is None  # insert over an existing one
    state = await store.read("writes")
    assert state is not None and (state.tat, state.blocked_until) == (100.0, 0.0)
    assert await store.write("writes", BucketState(101.0, 5.0, state.etag)) is not None
    assert await store.write("writes", BucketState(102.0, 0.0, state.etag)) is None  # stale


class RacingStore:
    """``TableBudgetStore`` whose first ``racers`` reads all finish before any write goes out: every racer
    writes against the same ETag, so exactly one can win that round."""

    def __init__(self, inner: TableBudgetStore, racers: int) -> None:
        self._inner, self._left = inner, racers
        self._all_read = asyncio.Event()
        self.lost = 0

    async def read(self, name: str) -> BucketState | None:
        state = await self._inner.read(name)
        if self._left > 0:
            self._left -= 1
            if self._left == 0:
                self._all_read.set()
            await self._all_read.wait()
        return state

    async def write(self, name: str, state: BucketState) -> str | None:
        etag = await self._inner.write(name, state)
        self.lost += etag is None
        return etag


async def test_racing_reservations_on_azurite_never_over_allocate(table: TableClient) -> None:
    """Five instances reserve at once against one Azurite entity: one wins each round and the losers retry
    (nobody comes back empty); the batches granted are disjoint and back to back, so together they are
    exactly the slots the stored schedule advanced by: nothing granted twice, nothing beyond the budget."""
    racers, want = 5, 4
    store = RacingStore(TableBudgetStore(table), racers)
    buckets = [SharedBucket(store, "race", 3000, 150.0) for _ in range(racers)]
    grants = sorted(await asyncio.gather(*(b.take(want) for b in buckets)), key=lambda g: g.start)
    assert all(g.shared and g.tokens == want for g in grants)
    assert store.lost >= racers - 1  # the first round: one winner, every other racer lost and retried
    step = want / buckets[0].rate
    for earlier, later in itertools.pairwise(grants):
        assert later.start == pytest.approx(earlier.start + step, abs=1e-5)
    stored = await TableBudgetStore(table).read("race")
    assert stored is not None
    granted = sum(g.tokens for g in grants)
    assert granted == pytest.approx((stored.tat - grants[0].start) * buckets[0].rate, abs=1e-3)  # of one slot


async def test_gate_shares_one_batch_among_the_processs_invocations() -> None:
    """Twenty concurrent invocations of one process take slots from its batches in order, one storage round
    per batch, and wait for each batch's start."""
    store, clock = FakeBudgetStore(), FakeTime()
    bucket = _bucket(store, clock)
    gate = SharedGate({"writes": bucket}, clock=clock, sleep=clock.sleep)
    start = clock.now
    waits = await asyncio.gather(*(gate.acquire(["writes"]) for _ in range(20)))
    assert len(waits) == 20
    assert clock.now - start >= (20 - bucket.max_batch) / bucket.rate - 1e-6  # the second batch starts later
    assert bucket.storage_calls <= 2 * 3  # a read and a write per batch (two batches, maybe one retry)


async def test_gate_defers_instead_of_waiting_past_the_bound() -> None:
    """When the next shared slot is further away than max_wait the gate raises WriteDeferred."""
    store, clock = FakeBudgetStore(), FakeTime()
    bucket = _bucket(store, clock)
    gate = SharedGate({"writes": bucket}, clock=clock, sleep=clock.sleep)
    await SharedBucket(store, "writes", 150, 15.0, clock=clock).block(clock.now + 60)
    with pytest.raises(WriteDeferred) as info:
        await gate.acquire(["writes"], max_wait=5)
    assert info.value.retry_after is not None and info.value.retry_after > 5


async def test_gate_throttle_blocks_every_instance() -> None:
    """A 429 seen by one process's gate reaches another process's next batch through the shared state."""
    store, clock = FakeBudgetStore(), FakeTime()
    one = SharedGate({"writes": _bucket(store, clock)}, clock=clock, sleep=clock.sleep)
    two = SharedGate({"writes": _bucket(store, clock)}, clock=clock, sleep=clock.sleep)
    await one.acquire(["writes"])
    await one.throttled(20)
    before = clock.now
    await two.acquire(["writes"])
    assert clock.now - before >= 20 - 1e-6


# ---------------------------------------------------------------- instances against a strict token bucket
# Three instances, each with a few concurrent invocations, drain a backlog through their gates in virtual
# time against Graph's limit read as strictly as it can be: a plain token bucket (150 writes per 15 s), full
# at start, refilled continuously, never below zero. No 429 at all may reach it, on fresh storage, on the
# state a previous drain left behind, after a warm-up and an idle spell, and with skewed clocks; and once
# the first window has passed the drain keeps at least 0.95 of Graph's rate.


def _check(drain: dict[str, float]) -> None:
    assert drain["throttled"] == 0, drain
    assert drain["fraction_after_first_window"] >= 0.95, drain


@pytest.mark.parametrize("skews", [(0.0, 0.0, 0.0), (-0.15, 0.0, 0.15)], ids=["same-clock", "skewed"])
async def test_a_strict_bucket_meets_no_429_on_fresh_storage(skews: tuple[float, ...]) -> None:
    time = VirtualTime()
    _check(await drain(time, StrictGraphBucket(time), instances(SlowStore(time), time, skews), 600))


@pytest.mark.parametrize("skews", [(0.0, 0.0, 0.0), (-0.15, 0.0, 0.15)], ids=["same-clock", "skewed"])
async def test_a_strict_bucket_meets_no_429_on_the_state_a_previous_drain_left(skews: tuple[float, ...]) -> None:
    """A second drain by new processes 30 s after the first ended: the budget's entity is the first one's."""
    time = VirtualTime()
    store, graph = SlowStore(time), StrictGraphBucket(time)
    _check(await drain(time, graph, instances(store, time, skews), 600))
    time.now += 30
    _check(await drain(time, graph, instances(store, time, skews), 600))


@pytest.mark.parametrize("skews", [(0.0, 0.0, 0.0), (-0.15, 0.0, 0.15)], ids=["same-clock", "skewed"])
async def test_a_strict_bucket_meets_no_429_after_a_warm_up_and_an_idle_spell(skews: tuple[float, ...]) -> None:
    """The same processes drain a few sign-ups, sit idle for 25 s (holding what is left of their batches),
    then drain a backlog."""
    time = VirtualTime()
    gates, graph = instances(SlowStore(time), time, skews), StrictGraphBucket(time)
    warm_up = await drain(time, graph, gates, 30)
    assert warm_up["throttled"] == 0
    time.now += 25
    _check(await drain(time, graph, gates, 600))
