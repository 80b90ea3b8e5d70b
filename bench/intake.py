"""Intake benchmark: sign-ups/s and p50/p99 latency through the local host into Azurite, against a fixed yardstick.

For each concurrency (1, 8, 32 clients) it measures, against the same Azurite:

* ``yardstick``: one Table insert (an entity the size of a sign-up record) and one
  enqueue, straight from the azure-data-tables and azure-storage-queue SDKs, with
  their clients as they come; ``lean``: the same, with clients that skip the
  per-request proxy lookups exactly when the app's do (a second ratio). It is
  fixed: it does not follow what intake writes, so the ratio cannot drift when
  intake grows;
* ``intake``: ``POST /api/signups`` through the local host, with the production
  defaults: the rate limits at their defaults, a form token on every post (as the
  page's own script sends; ``FORM_TOKEN_SECRET`` set), the audit on.

Each concurrency level posts from its own loopback address (127.0.0.11, .12, ...),
as one partner's corporate egress IP, with distinct addresses of one domain; every
level stays under the default per-IP limit, so any 429 is a refusal the limits
should not have made. Refusals (429) and other failures are columns, not errors.

Targets (issue 17): intake rate >= 0.8 x the yardstick's, intake p99 <= 1.5 x the
yardstick's p99, no 429 under the limits. The queue worker, the poison-queue
consumer and the sweeper are disabled so that only intake competes for the
machine. Run: ``make bench-intake`` (``--scale 0.1`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
from azure.core.exceptions import ResourceExistsError
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from devhost.processes import Service
from shared.abuse import FormTokens
from shared.settings import load_settings
from shared.storage import environment_proxies

from .common import cpu_seconds, save, stack, summarise

LEVELS = {1: 400, 8: 400, 32: 400}
WARMUP = 30
SECRET = "bench-intake"  # noqa: S105 - FORM_TOKEN_SECRET of the host; the bench signs its posts' tokens with it
YARD_TABLE, YARD_QUEUE = "benchyardstick", "bench-yardstick"


def production_limits() -> dict[str, str]:
    """The rate-limit settings at their defaults (the benchmarks' common host turns them off)."""
    defaults = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "INVITE_REDIRECT_URL": "https://x"})
    return {
        "RATE_LIMIT_PER_IP": str(defaults.rate_limit_per_ip),
        "RATE_LIMIT_PER_DOMAIN": str(defaults.rate_limit_per_domain),
        "RATE_LIMIT_WINDOW_SECONDS": str(defaults.rate_limit_window_seconds),
        "RATE_LIMIT_SYNC_SECONDS": str(defaults.rate_limit_sync_seconds),
    }


_GC_PAUSE = re.compile(rb"devhost\.gc generation=2 pause_ms=([0-9.]+)")


class HostWatch:
    """The host's CPU time (from ``/proc``) and its full garbage collections (``DEVHOST_GC_LOG``) over a span."""

    def __init__(self, host: Service) -> None:
        self.host = host

    def mark(self) -> tuple[float, int]:
        """Where things stand now: the host's CPU seconds and the length of its log."""
        return cpu_seconds(self.host), self.host.log_path.stat().st_size

    def since(self, mark: tuple[float, int]) -> tuple[float, list[float]]:
        """CPU seconds since ``mark`` and the full collections' pauses (ms) logged since."""
        with self.host.log_path.open("rb") as log:
            log.seek(mark[1])
            pauses = [float(m) for m in _GC_PAUSE.findall(log.read())]
        return cpu_seconds(self.host) - mark[0], pauses


async def _drive(
    concurrency: int, total: int, one: Callable[[int], Awaitable[int]]
) -> tuple[list[float], float, dict[int, int]]:
    """Run ``one(i)`` ``total`` times with ``concurrency`` workers; latencies, elapsed time, count per status."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            status = await one(i)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, statuses


def _record(i: int) -> dict[str, object]:
    """An entity shaped like a sign-up record (same number and kinds of properties, similar sizes)."""
    now = datetime.now(UTC)
    return {
        "PartitionKey": secrets.token_urlsafe(16),
        "RowKey": "signup",
        "email": f"yard{i}-{now.timestamp()}@fabrikam.com",
        "displayName": "Bench User",
        "company": "Fabrikam",
        "status": "queued",
        "createdAt": now,
        "updatedAt": now,
        "deadline": now + timedelta(days=1),
        "dueAt": now + timedelta(minutes=10),
        "attempts": 0,
        "policyProfile": "default",
        "policyAction": "approve",
        "policyReason": "domain",
        "language": "en",
        "answers": "{}",
    }


async def run(
    connection: str, url: str, levels: dict[int, int], watch: HostWatch
) -> dict[str, dict[str, dict[str, float]]]:
    # Two yardsticks of the same two writes. ``yardstick``: the SDKs' clients as they come (the issue's fixed
    # yardstick). ``lean``: clients that skip aiohttp's per-request proxy and netrc lookups exactly when the
    # app's do (shared.storage.environment_proxies), so no part of a ratio is SDK overhead the app has cut.
    plain = (
        TableClient.from_connection_string(connection, YARD_TABLE),
        QueueClient.from_connection_string(connection, YARD_QUEUE),
    )
    lean_options = {"use_env_settings": environment_proxies()}
    lean = (
        TableClient.from_connection_string(connection, YARD_TABLE, **lean_options),
        QueueClient.from_connection_string(connection, YARD_QUEUE, **lean_options),
    )
    for create in (plain[0].create_table, plain[1].create_queue):
        with contextlib.suppress(ResourceExistsError):
            await create()

    def writes(table: TableClient, queue: QueueClient, offset: int) -> Callable[[int], Awaitable[int]]:
        async def two_writes(i: int) -> int:
            entity = _record(offset + i)
            await table.create_entity(entity)
            await queue.send_message(str(entity["PartitionKey"]))
            return 202

        return two_writes

    yardstick, lean_yardstick = writes(*plain, 0), writes(*lean, 10_000_000)

    # Pages served ten seconds ago: past the minimum fill time, well within the token's day.
    tokens = FormTokens(SECRET, 0, clock=lambda: time.time() - 10)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for n, (concurrency, total) in enumerate({0: WARMUP, **levels}.items()):
        source = f"127.0.0.{11 + n}"  # one egress address per level; level 0 is the warm-up
        connector = aiohttp.TCPConnector(limit=64, local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post(i: int, level: int = n) -> int:
                body = {
                    "email": f"bench{i}-{level}@fabrikam.com",
                    "displayName": "Bench User",
                    "company": "Fabrikam",
                    "formToken": tokens.issue(),
                }
                async with http.post(f"{url}/api/signups", json=body) as response:
                    await response.read()
                    return response.status

            if concurrency == 0:
                await _drive(4, total, yardstick)
                await _drive(4, total, lean_yardstick)
                await _drive(4, total, post)
                continue
            yard_lat, yard_time, _ = await _drive(concurrency, total, yardstick)
            lean_lat, lean_time, _ = await _drive(concurrency, total, lean_yardstick)
            mark = watch.mark()
            intake_lat, intake_time, statuses = await _drive(concurrency, total, post)
            host_cpu, pauses = watch.since(mark)
        yard, intake = summarise(yard_lat, yard_time), summarise(intake_lat, intake_time)
        lean_yard = summarise(lean_lat, lean_time)
        accepted = statuses.get(202, 0)
        intake["rate"] = accepted / intake_time  # sign-ups accepted per second: refusals are not throughput
        refused = statuses.get(429, 0)
        failed = total - accepted - refused
        ratio = {"rate": intake["rate"] / yard["rate"], "p50": intake["p50_ms"] / yard["p50_ms"]}
        ratio["p99"] = intake["p99_ms"] / yard["p99_ms"]
        ratio["rate_lean"] = intake["rate"] / lean_yard["rate"]
        ratio["p99_lean"] = intake["p99_ms"] / lean_yard["p99_ms"]
        host = {
            "cpu_ms_per_signup": 1000 * host_cpu / total,
            "gc_full_collections": len(pauses),
            "gc_longest_pause_ms": max(pauses, default=0.0),
        }
        results[str(concurrency)] = {
            "yardstick": yard,
            "yardstick_lean": lean_yard,
            "intake": {**intake, "refused_429": refused, "failed": failed},
            "ratio": ratio,
            "host": host,
            "load_average": os.getloadavg()[0],
        }
        print(
            f"c={concurrency:>2}"
            f"  yardstick {yard['rate']:6.1f}/s p50 {yard['p50_ms']:6.1f} p99 {yard['p99_ms']:6.1f} ms"
            f" | intake {intake['rate']:6.1f}/s p50 {intake['p50_ms']:6.1f} p99 {intake['p99_ms']:6.1f} ms"
            f" | rate x{ratio['rate']:.2f} (>=0.8) p50 x{ratio['p50']:.2f} p99 x{ratio['p99']:.2f} (<=1.5)"
            f" | lean yardstick {lean_yard['rate']:6.1f}/s: rate x{ratio['rate_lean']:.2f} p99 x{ratio['p99_lean']:.2f}"
            f" | 429 {refused} other {failed}"
            f" | host CPU {host['cpu_ms_per_signup']:.2f} ms/sign-up, full GCs {len(pauses)}"
            f" (longest {host['gc_longest_pause_ms']:.0f} ms) | load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if failed:
            print(f"     statuses: {statuses}", flush=True)
    for client in (*plain, *lean):
        await client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the request counts")
    args = parser.parse_args()
    levels = {c: max(20, int(n * args.scale)) for c, n in LEVELS.items()}
    limits = production_limits()
    print(f"production defaults: {limits}, FORM_TOKEN_SECRET set, audit on", flush=True)
    with stack() as st:
        url, host = st.host(
            {
                "AzureWebJobs.invite_signup.Disabled": "true",
                "AzureWebJobs.finalise_poisoned_signup.Disabled": "true",
                "AzureWebJobs.sweep_signups.Disabled": "true",
                "SIGNUP_QUEUE": "bench-intake",
                "SIGNUP_TABLE": "benchintake",
                "FORM_TOKEN_SECRET": SECRET,
                "DEVHOST_GC_LOG": "1",  # the host logs each full collection's pause; counted per level
                **limits,
            }
        )
        results = asyncio.run(run(st.connection, url, levels, HostWatch(host)))
    print(f"results: {save('intake', {'settings': limits, 'levels': results})}")


if __name__ == "__main__":
    main()
