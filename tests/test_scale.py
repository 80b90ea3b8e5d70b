"""Scale-out end to end: three local hosts, one Azurite, one emulator, one shared Graph write budget.

The emulator's buckets are strict here: plain token buckets (full at start, refilled continuously, never
below zero), so a host that spends a token Graph's bucket does not have meets a 429 at once, and a 429
costs nothing that later throttling would hide. The drain is long enough that hosts pacing only locally
(each to the whole budget) fail it: they write three times the rate once the first window is spent. And it
runs on the state a previous drain left, where the budget used to overdraw Graph's bucket (see
docs/graph-and-pacing.md): the old budget fails it too.

The emulator runs as its own process, as Graph would: on the test's event loop, every moment the test
spends submitting sign-ups would hold Graph's answers back and release them together, a jitter that the
budget's headroom covers at Graph's 150 s window but not at this test's 15 s one.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devhost.processes import Service, free_port, start_devhost, start_emulator
from tests.conftest import IDENTITY_HEADER, host_env
from tests.fault_stack import settle, submit

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

# Graph's 3,000 per 150 s shrunk tenfold in the window and fiftyfold in the budget: 4 writes/s, which three
# hosts pacing alone (each to the whole budget) overrun threefold even on a loaded machine.
BUDGET, WINDOW = 60, 15.0
WARM_UP, BACKLOG = 12, 160  # the backlog takes at least (160 - 60) / 4 = 25 s: well past the first window
IDLE = WINDOW + 5  # after a whole window of nothing, Graph's bucket is full again: the budget may burst


async def _invitations(graph: httpx.AsyncClient, count: int, within: float) -> None:
    """Until Graph has performed ``count`` invitations (cheaper than polling every status)."""
    deadline = time.monotonic() + within
    while (done := (await graph.get("/_emulator/stats")).json()["invitations"]) < count:
        assert time.monotonic() < deadline, f"{done} of {count} invitations after {within}s"
        await asyncio.sleep(0.5)


def _after_first_window(posts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """The drain's 429s after its first window, and its rate after that window as a fraction of Graph's."""
    first = min(r["at"] for r in posts)
    late = [r for r in posts if r["at"] > first + WINDOW]
    performed = [r for r in late if r["status"] == 201]
    span = max(r["at"] for r in performed) - first - WINDOW
    return [r for r in late if r["status"] == 429], len(performed) / span / (BUDGET / WINDOW)


async def test_three_hosts_drain_inside_one_budget_that_a_strict_bucket_holds(azurite: str, tmp_path: Path) -> None:
    """A host drains a warm-up on fresh storage and goes; more than a window later three new hosts drain a
    backlog together on the budget's state it left: Graph's strict bucket answers no 429 in the warm-up nor
    after the drain's first window, the hosts keep most of its rate, every sign-up ends invited, and no
    address is invited twice."""
    port = free_port()
    limits = ["--write-budget", str(BUDGET), "--write-window", str(WINDOW), "--strict-buckets"]
    emulator = start_emulator(port, tmp_path / "graph", [*limits, "--identity-header", IDENTITY_HEADER])
    base = f"http://127.0.0.1:{port}"
    env = host_env(
        azurite,
        base,
        GRAPH_PACING_MODE="shared",
        GRAPH_WRITE_BUDGET=str(BUDGET),
        GRAPH_WRITE_WINDOW_SECONDS=str(WINDOW),
        # 48 invocations a host share a third of 4 writes/s: the last waits about 37 s. At the default 20 s
        # most would be deferred and come back late, a tail that measures the queue's delays, not the budget.
        GRAPH_PACING_MAX_WAIT_SECONDS="60",
    )
    hosts: list[Service] = []
    numbers = itertools.count()

    def start(**extra: str) -> str:
        port, logs = free_port(), tmp_path / f"host{next(numbers)}"
        hosts.append(start_devhost(port, {**env, **extra}, logs, settings_file=tmp_path / "none.json"))
        return f"http://127.0.0.1:{port}"

    try:
        intake = start(**{"AzureWebJobs.invite_signup.Disabled": "true"})
        async with (
            httpx.AsyncClient(base_url=intake, timeout=30) as client,
            httpx.AsyncClient(base_url=base, timeout=30) as graph,
        ):
            warm = await asyncio.gather(*(submit(client, f"warm{n:03d}@fabrikam.com") for n in range(WARM_UP)))
            start()
            await _invitations(graph, WARM_UP, within=60)
            hosts.pop().stop()  # a process that drained before, gone; its budget entity stays, as in production
            warm_posts = (await graph.get("/_emulator/requests")).json()
            since = max(r["seq"] for r in warm_posts)
            urls = []
            for start_at in range(0, BACKLOG, 50):  # the backlog waits in the queue while nobody drains
                batch = range(start_at, min(BACKLOG, start_at + 50))
                urls += await asyncio.gather(*(submit(client, f"scale{n:03d}@fabrikam.com") for n in batch))
            await asyncio.sleep(max(0.0, max(r["at"] for r in warm_posts) + IDLE - time.time()))
            for _ in range(3):
                start()
            await _invitations(graph, WARM_UP + BACKLOG, within=120)
            views = await settle(client, [*warm, *urls], within=60)
            requests = (await graph.get("/_emulator/requests")).json()
    finally:
        for host in hosts:
            host.stop()
        emulator.stop()
    assert {v["status"] for v in views} == {"invited"}
    invitations = [r for r in requests if r["operation"] == "invitation"]
    performed = [r for r in invitations if r["status"] == 201]
    addresses = {r["body"]["invitedUserEmailAddress"] for r in performed}
    assert len(addresses) == len(performed) == WARM_UP + BACKLOG
    warm_posts = [r for r in invitations if r["seq"] <= since]
    drain_posts = [r for r in invitations if r["seq"] > since]
    assert min(r["at"] for r in drain_posts) - max(r["at"] for r in warm_posts) >= WINDOW  # Graph's bucket full
    throttled, fraction = _after_first_window(drain_posts)
    assert throttled == [], f"{len(throttled)} writes met a 429 after the drain's first window"
    assert [r for r in warm_posts if r["status"] == 429] == []
    assert fraction >= 0.85, f"the hosts used only {fraction:.2f} of Graph's rate after the first window"
    for host in hosts:
        assert "budget.local_fallback" not in host.log_path.read_text()
