"""Rate-limit benchmark: how far past the limit several instances admit, against the stated bound.

Several ``SharedLimiter`` instances, each with its own Table client on one Azurite and
the default reconciliation period, take requests for one key, spread round-robin over
them at a steady total rate, until 1.5 x the limit has been offered. It reports what
was admitted, the overshoot past the limit, the first refusal (never before the limit
was really reached), and the bound of ``docs/abuse.md``: the admissions the other
instances make in 2 x (period + the slowest reconciliation round measured), plus one per other
instance (a key admitted once is not published).

Run: ``make bench-ratelimit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping

from shared.abuse import SharedLimiter, TableCountStore
from shared.settings import load_settings
from shared.storage import build_table_client

from .common import save, stack

# (limit, instances, requests per second over all of them); 1000 is the default per-IP limit.
SCENARIOS = [(100, 2, 20.0), (100, 4, 20.0), (100, 4, 100.0), (1000, 4, 100.0), (1000, 4, 300.0)]


class TimedStore:
    """A ``CountStore`` that records how long each reconciliation round takes."""

    def __init__(self, inner: TableCountStore, rounds: list[float]) -> None:
        self._inner = inner
        self._rounds = rounds

    async def exchange(self, kind: str, window: int, instance: str, mine: Mapping[str, int]) -> dict[str, int]:
        started = time.perf_counter()
        try:
            return await self._inner.exchange(kind, window, instance, mine)
        finally:
            self._rounds.append(time.perf_counter() - started)

    async def forget(self, kind: str, window: int, instance: str, hashes: Iterable[str]) -> None:
        await self._inner.forget(kind, window, instance, hashes)


async def scenario(connection: str, limit: int, instances: int, rate: float, key: str) -> dict[str, float]:
    settings = load_settings(
        {"AzureWebJobsStorage": connection, "INVITE_REDIRECT_URL": "https://x", "SIGNUP_TABLE": "benchlimits"}
    )
    period = settings.rate_limit_sync_seconds
    clients = [build_table_client(settings) for _ in range(instances)]
    rounds: list[float] = []
    limiters = [SharedLimiter(TimedStore(TableCountStore(c), rounds), "ip", 3600, period) for c in clients]
    admitted, first_refusal_at = 0, None
    started = time.perf_counter()
    for i in range(int(limit * 1.5)):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        if (await limiters[i % instances].take(key, limit)).allowed:
            admitted += 1
        elif first_refusal_at is None:
            first_refusal_at = admitted
    for limiter in limiters:
        await limiter.aclose()
    for client in clients:
        await client.close()
    slowest = max(rounds, default=0.0)
    others_rate = rate * (instances - 1) / instances
    return {
        "instances": instances,
        "rate_per_s": rate,
        "limit": limit,
        "admitted": admitted,
        "overshoot": admitted - limit,
        "overshoot_pct": 100.0 * (admitted - limit) / limit,
        "first_refusal_after": float(first_refusal_at if first_refusal_at is not None else admitted),
        "slowest_round_ms": 1000 * slowest,
        "bound": others_rate * 2 * (period + slowest) + (instances - 1),
    }


def main() -> None:
    results = []
    with stack() as st:
        for n, (limit, instances, rate) in enumerate(SCENARIOS):
            r = asyncio.run(scenario(st.connection, limit, instances, rate, f"198.51.100.{n}"))
            results.append(r)
            print(
                f"{instances} instances, {rate:5.0f}/s: admitted {r['admitted']:.0f} of limit {limit:4d}"
                f" (overshoot {r['overshoot']:.0f}, {r['overshoot_pct']:.0f} %; bound {r['bound']:.1f})"
                f", first refusal after {r['first_refusal_after']:.0f}, slowest round {r['slowest_round_ms']:.0f} ms",
                flush=True,
            )
    print(f"results: {save('ratelimit', results)}")


if __name__ == "__main__":
    main()
