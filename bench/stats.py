"""Admin overview benchmark: ``GET /api/manage/stats`` and the admin list with 100,000 requests on record.

Seeds the day index of 100,000 requests over the last 30 days straight into Azurite with entity-group batch
writes (each request's two rows, and each day's summary shards with the counts of its rows), and the records
of the newest ``--records`` requests (the ones the measured list pages show; the list reads a page's records
by id). Then, through the local host with a function key, times:

* ``GET /api/manage/stats?days=30`` (target: p50 under 200 ms);
* the list's first page and its tenth page (following nine tokens), newest first, 50 a page;
* a filtered first page (``status=failed&domain=...``).

Reported: p50 and p99 of each, from ``--rounds`` timed requests after two warm-up requests.
Run: ``make bench-stats`` (``--requests 10000`` for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from azure.data.tables.aio import TableClient

from shared.lifecycle.models import Signup, Status, new_signup_id, new_write_token
from shared.lifecycle.store import to_entity
from shared.stats.index import SHARDS, SUMMARY, partition, row_of, shard_of

from .common import ONE_WRITE_POLICY, save, stack, summarise

KEY = "bench-function-key"
TABLE = "benchstats"
# A month of a busy portal: most invited, some refused or waiting.
MIX = [
    (Status.INVITED, 0.78),
    (Status.FAILED, 0.05),
    (Status.DENIED, 0.06),
    (Status.LINKED, 0.05),
    (Status.PENDING_APPROVAL, 0.03),
    (Status.EXPIRED, 0.02),
    (Status.RETRYING, 0.01),
]
CODES = ["Authorization_RequestDenied", "BadRequest", "DeadlineExceeded", "ExistingMember", "Forbidden"]
DOMAINS = [f"partner{n}.com" for n in range(40)]


def make(rng: random.Random, at: datetime, n: int) -> Signup:
    """One request as the lifecycle leaves it."""
    status = rng.choices([s for s, _ in MIX], [w for _, w in MIX])[0]
    invited_at = at + timedelta(seconds=rng.lognormvariate(3.5, 1.0)) if status is Status.INVITED else None
    return Signup(
        id=new_signup_id(at),
        email=f"guest{n:06d}@{rng.choice(DOMAINS)}",
        display_name=f"Guest {n}",
        company=None,
        justification=None,
        status=status,
        created_at=at,
        updated_at=invited_at or at,
        deadline=at + timedelta(days=1),
        invited_at=invited_at,
        error_code=rng.choice(CODES) if status is Status.FAILED else None,
        maybe_invited=status is Status.RETRYING and rng.random() < 0.3,
        policy_profile=rng.choice(["partners", "suppliers", None]),
        policy_action="approve",
        conversion={"user": "u"} if rng.random() < 0.02 else None,
        write_token=new_write_token(),
    )


async def seed(connection: str, count: int, records: int, days: int) -> dict[str, Any]:
    """Write the index (rows and summaries) of ``count`` requests and the newest ``records`` records."""
    rng = random.Random(21)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    made = sorted(
        (make(rng, now - timedelta(seconds=rng.uniform(0, days * 86400 - 120)), n) for n in range(count)),
        key=lambda s: s.id,
    )
    by_day: dict[str, list[dict[str, Any]]] = {}
    shards: dict[tuple[str, int], Counter[str]] = {}
    for signup in made:
        row = row_of(signup)
        pk = partition(row.day)
        ascending, descending = row.keys
        by_day.setdefault(pk, []).extend([row.entity(ascending), row.entity(descending)])
        shards.setdefault((pk, shard_of(row.id)), Counter()).update(row.contribution())
    for (pk, shard), counts in shards.items():
        by_day[pk].append({"PartitionKey": pk, "RowKey": f"{SUMMARY}{shard}", "counts": json.dumps(dict(counts))})
    started = time.monotonic()
    async with TableClient.from_connection_string(connection, TABLE) as table:
        await table.create_table()
        gate = asyncio.Semaphore(8)

        async def batch(entities: list[dict[str, Any]]) -> None:
            async with gate:
                await table.submit_transaction([("upsert", e) for e in entities])

        await asyncio.gather(*(batch(rows[i : i + 100]) for rows in by_day.values() for i in range(0, len(rows), 100)))

        async def record(signup: Signup) -> None:
            async with gate:
                await table.upsert_entity(to_entity(signup))

        await asyncio.gather(*(record(s) for s in made[-records:]))
    return {
        "requests": count,
        "days": len(by_day),
        "index_entities": sum(len(v) for v in by_day.values()),
        "shards_per_day": SHARDS,
        "records": records,
        "seed_seconds": round(time.monotonic() - started, 1),
        "failed_domain": made[-1].domain,
    }


async def timed(http: aiohttp.ClientSession, url: str, rounds: int, pages: int = 1) -> dict[str, float]:
    """Time ``rounds`` requests of ``url`` (the ``pages``-th page, following tokens untimed before it)."""
    latencies: list[float] = []
    for n in range(rounds + 2):
        token = None
        for _ in range(pages - 1):
            async with http.get(url, params={"continuationToken": token} if token else {}) as response:
                token = (await response.json())["continuationToken"]
        start = time.perf_counter()
        async with http.get(url, params={"continuationToken": token} if token else {}) as response:
            body = await response.read()
            assert response.status == 200, body[:300]
        if n >= 2:  # two warm-up requests
            latencies.append(time.perf_counter() - start)
    return {k: round(v, 1) for k, v in summarise(latencies, sum(latencies)).items() if k != "rate"}


async def measure(url: str, rounds: int, domain: str) -> dict[str, Any]:
    headers = {"x-functions-key": KEY}
    async with aiohttp.ClientSession(headers=headers) as http:
        return {
            "stats_30_days": await timed(http, f"{url}/api/manage/stats?days=30", rounds),
            "list_first_page": await timed(http, f"{url}/api/manage/signups?pageSize=50", rounds),
            "list_tenth_page": await timed(http, f"{url}/api/manage/signups?pageSize=50", rounds, pages=10),
            "list_filtered_first_page": await timed(
                http, f"{url}/api/manage/signups?pageSize=50&status=invited&domain={domain}", rounds
            ),
        }


async def cached(url: str, rounds: int) -> dict[str, float]:
    """The stats with the default cache: requests within 10 s of a read answer from it."""
    async with aiohttp.ClientSession(headers={"x-functions-key": KEY}) as http:
        return await timed(http, f"{url}/api/manage/stats?days=30", rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with stack() as st:
        seeded = asyncio.run(seed(st.connection, args.requests, args.records, args.days))
        print(json.dumps(seeded), flush=True)
        base = {
            "SIGNUP_TABLE": TABLE,
            "SIGNUP_POLICY": ONE_WRITE_POLICY,
            "DEVHOST_FUNCTION_KEY": KEY,
            # Nothing else competes with the measured reads (the sweeper would re-index what it meets).
            "AzureWebJobs.invite_signup.Disabled": "true",
            "AzureWebJobs.finalise_poisoned_signup.Disabled": "true",
            "AzureWebJobs.sweep_signups.Disabled": "true",
        }
        # Every stats request reads storage (STATS_CACHE_SECONDS=0); then the default cache, warm.
        url, host = st.host({**base, "STATS_CACHE_SECONDS": "0"})
        results = {"seeded": seeded, **asyncio.run(measure(url, args.rounds, seeded.pop("failed_domain")))}
        host.stop()
        url, _ = st.host({**base, "STATS_CACHE_SECONDS": "10"})
        results["stats_30_days_cache_10s"] = asyncio.run(cached(url, args.rounds))
    print(json.dumps(results, indent=2))
    print(f"results: {save('stats', results)}")


if __name__ == "__main__":
    main()
