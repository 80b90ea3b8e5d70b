"""Intake benchmark: sign-ups/s and p50/p99 latency through the local host into Azurite.

For each concurrency (1, 8, 32 clients) it measures, against the same Azurite:

* ``limit``: the bare durable work of a sign-up, straight from the storage
  classes over the SDKs, at the same concurrency: the record and its due-index
  entry (two table inserts, together), the address claim (a third insert), one
  enqueue;
* ``intake``: ``POST /api/signups`` through the local host (HTTP parsing,
  validation, the same writes, the 202).

Targets: intake rate >= 0.8 x limit rate, intake p99 <= 1.5 x limit p99.
The queue worker is disabled (``AzureWebJobs.invite_signup.Disabled``) so that
only intake competes for the machine. Run: ``make bench-intake``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import aiohttp

from shared.lifecycle.models import Signup, Status, new_signup_id, utcnow
from shared.lifecycle.queue import StorageQueue
from shared.lifecycle.store import (
    DueEntry,
    TableAddressBook,
    TableDueIndex,
    TableSignupStore,
    address_key,
    bucket_of,
)
from shared.settings import load_settings
from shared.storage import build_queue_client, build_table_client

from .common import save, stack, summarise

LEVELS = {1: 300, 8: 1200, 32: 2000}
WARMUP = 30


async def _drive(concurrency: int, total: int, one: Callable[[int], Awaitable[None]]) -> tuple[list[float], float]:
    """Run ``one(i)`` ``total`` times with ``concurrency`` workers; return latencies and elapsed time."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def run(connection: str, url: str, levels: dict[int, int]) -> dict[str, dict[str, dict[str, float]]]:
    settings = load_settings(
        {
            "AzureWebJobsStorage": connection,
            "INVITE_REDIRECT_URL": "https://myapps.microsoft.com",
            "SIGNUP_QUEUE": "bench-limit",
            "SIGNUP_TABLE": "benchlimit",
        }
    )
    table, queue = build_table_client(settings), build_queue_client(settings)
    store, sink = TableSignupStore(table), StorageQueue(queue)
    index, addresses = TableDueIndex(table), TableAddressBook(table)

    async def bare(i: int) -> None:
        now = utcnow()
        email = f"limit{i}-{now.timestamp()}@fabrikam.com"
        signup = Signup(
            new_signup_id(), email, "Bench", "Fabrikam", None, Status.QUEUED, now, now, now + timedelta(days=1)
        )
        await asyncio.gather(
            store.create(signup), index.add(DueEntry(bucket_of(now + timedelta(minutes=10)), signup.id))
        )
        await addresses.insert(address_key(email), signup.id)
        await sink.enqueue(signup.id)

    results: dict[str, dict[str, dict[str, float]]] = {}
    run_id = 0
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(i: int) -> None:
            body = {"email": f"bench{i}-{run_id}@fabrikam.com", "displayName": "Bench User", "company": "Fabrikam"}
            async with http.post(f"{url}/api/signups", json=body) as response:
                if response.status != 202:
                    raise RuntimeError(f"intake answered {response.status}: {await response.text()}")
                await response.read()

        await _drive(4, WARMUP, bare)
        await _drive(4, WARMUP, post)
        for concurrency, total in levels.items():
            run_id += 1  # distinct addresses in every run: each sign-up claims its own address
            limit = summarise(*await _drive(concurrency, total, bare))
            intake = summarise(*await _drive(concurrency, total, post))
            results[str(concurrency)] = {
                "limit": limit,
                "intake": intake,
                "ratio": {
                    "rate": intake["rate"] / limit["rate"],
                    "p99": intake["p99_ms"] / limit["p99_ms"],
                },
            }
            print(
                f"c={concurrency:>2}"
                f"  limit {limit['rate']:6.1f}/s p50 {limit['p50_ms']:6.1f} ms p99 {limit['p99_ms']:6.1f} ms"
                f" | intake {intake['rate']:6.1f}/s p50 {intake['p50_ms']:6.1f} ms p99 {intake['p99_ms']:6.1f} ms"
                f" | rate x{intake['rate'] / limit['rate']:.2f} (>=0.8)"
                f"  p99 x{intake['p99_ms'] / limit['p99_ms']:.2f} (<=1.5)",
                flush=True,
            )
    await table.close()
    await queue.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the request counts")
    args = parser.parse_args()
    levels = {c: max(20, int(n * args.scale)) for c, n in LEVELS.items()}
    with stack() as st:
        url, _ = st.host(
            {
                "AzureWebJobs.invite_signup.Disabled": "true",
                "AzureWebJobs.finalise_poisoned_signup.Disabled": "true",
                "AzureWebJobs.sweep_signups.Disabled": "true",
                "SIGNUP_QUEUE": "bench-intake",
                "SIGNUP_TABLE": "benchintake",
            }
        )
        results = asyncio.run(run(st.connection, url, levels))
    print(f"results: {save('intake', results)}")


if __name__ == "__main__":
    main()
