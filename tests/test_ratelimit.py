"""The rate limiter and the domain budget: exact on one instance; several instances on Azurite never refuse
below the limit, overshoot within the stated bound (docs/abuse.md), never refuse for contention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from shared.abuse import DomainBudget, MemoryCountStore, SharedLimiter, TableCountStore
from shared.settings import Settings
from shared.storage import build_table_client


async def test_one_instance_counts_exactly_per_window() -> None:
    now = [6000.0]
    limiter = SharedLimiter(MemoryCountStore(), "ip", 600, 1, clock=lambda: now[0])
    verdicts = [await limiter.take("203.0.113.7", 5) for _ in range(8)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 3
    assert verdicts[-1].retry_after == 600
    assert (await limiter.take("203.0.113.8", 5)).allowed  # another key, its own count
    now[0] += 599
    assert (await limiter.take("203.0.113.7", 5)).retry_after == 1
    now[0] += 1  # the next window
    assert (await limiter.take("203.0.113.7", 5)).allowed
    await limiter.aclose()


async def test_a_fresh_instance_reads_the_others_before_its_first_decision() -> None:
    """A new instance (scale-out) must not admit a burst on an empty view: its first request waits for one
    read of the others' counts; the requests after it are decided in memory."""
    store = MemoryCountStore()
    first = SharedLimiter(store, "ip", 600, 3600)
    for _ in range(5):
        await first.take("203.0.113.9", 5)
    await first.sync()
    fresh = SharedLimiter(store, "ip", 600, 3600)
    assert not (await fresh.take("203.0.113.9", 5)).allowed
    assert fresh.known("203.0.113.9") == 5
    await first.aclose()
    await fresh.aclose()


async def _race(limiters: list[SharedLimiter], key: str, limit: int, per_round: int, rounds: int) -> list[int]:
    """Each round every limiter takes ``per_round`` requests (interleaved), then all sync at once. Returns, for
    every refusal, how many requests had been admitted in all when it was refused."""
    admitted, refused_at = 0, []
    for _ in range(rounds):
        for _ in range(per_round):
            for limiter in limiters:
                if (await limiter.take(key, limit)).allowed:
                    admitted += 1
                else:
                    refused_at.append(admitted)
        await asyncio.gather(*(limiter.sync() for limiter in limiters))
    return [admitted, *refused_at]


async def test_instances_hold_the_limit_within_the_bound_in_table_storage(settings: Settings) -> None:
    """Four instances on Azurite, each with its own client: no request is refused before the limit was really
    reached, and the overshoot stays within the stated bound, 2 x (the others' admissions per sync round)."""
    clients = [build_table_client(settings) for _ in range(4)]
    try:
        limiters = [SharedLimiter(TableCountStore(c), "ip", 600, 3600) for c in clients]
        per_round, limit = 5, 90  # not a multiple of a round's 20: the last round overshoots
        admitted, *refused_at = await _race(limiters, "198.51.100.1", limit, per_round, rounds=20)
        assert refused_at and min(refused_at) >= limit  # never refused below the limit
        assert limit <= admitted <= limit + 2 * (len(limiters) - 1) * per_round
        # Once the instances have synced the figures, the limit holds: nothing more is admitted anywhere,
        # and each instance knows the whole count, not more.
        assert (await _race(limiters, "198.51.100.1", limit, per_round, rounds=2))[0] == 0
        assert not any([(await lim.take("198.51.100.1", admitted)).allowed for lim in limiters])
        assert all([(await lim.take("198.51.100.1", admitted + 1)).allowed for lim in limiters])
    finally:
        for limiter in limiters:
            await limiter.aclose()
        for client in clients:
            await client.close()


async def test_rows_hold_hashes_only_and_go_when_their_window_has_passed(settings: Settings) -> None:
    now = [7200.0]
    client = build_table_client(settings)
    try:
        limiter = SharedLimiter(TableCountStore(client), "ip", 600, 3600, clock=lambda: now[0], instance="i1")
        for _ in range(3):
            await limiter.take("203.0.113.50", 10)
        await limiter.take("203.0.113.51", 10)  # admitted once: not published
        await limiter.sync()
        rows = [r async for r in client.query_entities("PartitionKey eq 'rate-ip-7200'")]
        assert [(r["RowKey"].split(".")[1], r["count"]) for r in rows] == [("i1", 3)]
        assert "203.0.113" not in str(rows)
        now[0] += 600
        await limiter.sync()
        assert [r async for r in client.query_entities("PartitionKey eq 'rate-ip-7200'")] == []
    finally:
        await client.close()


async def test_no_request_is_refused_for_contention(settings: Settings) -> None:
    """64 concurrent requests over four instances, while the instances reconcile through Azurite in the
    background every 10 ms: all are admitted (nothing waits for or fights over a counter)."""
    clients = [build_table_client(settings) for _ in range(4)]
    limiters = [SharedLimiter(TableCountStore(c), "ip", 600, 0.01) for c in clients]
    try:

        async def one(i: int) -> bool:
            await asyncio.sleep(0.001 * (i % 8))
            return (await limiters[i % 4].take("198.51.100.2", 64)).allowed

        results = await asyncio.gather(*(one(i) for i in range(64)))
        assert all(results)
        # Within a few background rounds every instance has read the others' 48.
        for _ in range(500):
            if all(lim.known("198.51.100.2") == 64 for lim in limiters):
                break
            await asyncio.sleep(0.01)
        assert [lim.known("198.51.100.2") for lim in limiters] == [64] * 4
        assert not any([(await lim.take("198.51.100.2", 64)).allowed for lim in limiters])
    finally:
        for limiter in limiters:
            await limiter.aclose()
        for client in clients:
            await client.close()


async def test_the_domain_budget() -> None:
    """Counted per domain on the lifecycle's clock; over the budget: False (the admission step sends the
    sign-up to review); a redelivered sign-up is not charged twice; 0 is no budget."""
    clock = [datetime(2026, 1, 5, 9, 0, tzinfo=UTC)]
    budget = DomainBudget.create(MemoryCountStore(), 3, 600, 1, clock=lambda: clock[0])
    assert [await budget.admit("Fabrikam.com", clock[0]) for _ in range(4)] == [True, True, True, False]
    assert await budget.admit("contoso.com", clock[0])
    again = DomainBudget.create(MemoryCountStore(), 1, 600, 1, clock=lambda: clock[0])
    assert await again.admit("fabrikam.com", clock[0], signup_id="a")
    assert await again.admit("fabrikam.com", clock[0], signup_id="a")  # a redelivery is not charged twice
    assert not await again.admit("fabrikam.com", clock[0], signup_id="b")
    clock[0] += timedelta(minutes=10)
    await again.aclose()  # a round on the moved clock: the old window is forgotten
    assert await again.admit("fabrikam.com", clock[0], signup_id="b")  # the next window
    off = DomainBudget.create(MemoryCountStore(), 0, 600, 1)
    assert all([await off.admit("fabrikam.com", clock[0]) for _ in range(5)])
    for each in (budget, again, off):
        await each.aclose()
