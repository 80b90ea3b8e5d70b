"""Scale-out end to end: three local hosts, one Azurite, one emulator, one shared Graph write budget."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from devhost.processes import Service, free_port, start_devhost
from graph_emulator.server import GraphEmulator
from tests.conftest import host_env
from tests.test_faults import settle, submit

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

BUDGET, WINDOW = 150, 15.0  # Graph's 3,000 per 150 s shrunk tenfold in the window, twentyfold in the budget


async def test_three_hosts_drain_a_backlog_inside_one_budget(
    azurite: str, emulator: GraphEmulator, emulator_server: tuple[GraphEmulator, str], tmp_path: Path
) -> None:
    """A backlog drained by three hosts together: their writes stay within the one budget (no 429 after the
    first window), every sign-up ends invited, and no address is invited twice."""
    emulator.config.write_budget, emulator.config.write_window_seconds = BUDGET, WINDOW
    emulator.reset()
    env = host_env(azurite, emulator_server[1], GRAPH_WRITE_BUDGET=str(BUDGET), GRAPH_WRITE_WINDOW_SECONDS=str(WINDOW))
    hosts: list[Service] = []

    def start(**extra: str) -> str:
        port, logs = free_port(), tmp_path / f"host{len(hosts)}"
        hosts.append(start_devhost(port, {**env, **extra}, logs, settings_file=tmp_path / "none.json"))
        return f"http://127.0.0.1:{port}"

    try:
        intake = start(**{"AzureWebJobs.invite_signup.Disabled": "true"})
        async with httpx.AsyncClient(base_url=intake, timeout=30) as client:
            urls = list(await asyncio.gather(*(submit(client, f"scale{n:03d}@fabrikam.com") for n in range(220))))
        hosts.pop().stop()
        drainers = [start() for _ in range(3)]
        async with httpx.AsyncClient(base_url=drainers[0], timeout=30) as client:
            views = await settle(client, [u.replace(intake, drainers[0]) for u in urls], within=120)
    finally:
        for host in hosts:
            host.stop()
    assert {v["status"] for v in views} == {"invited"}
    posts = [r for r in emulator.requests if r.operation == "invitation"]
    first = min(r.at for r in posts)
    assert [r for r in posts if r.status == 429 and r.at > first + WINDOW] == []
    performed = [r for r in posts if r.status == 201]
    assert len({r.body["invitedUserEmailAddress"] for r in performed}) == len(performed) == 220
    span = max(r.at for r in performed) - first
    assert len(performed) <= BUDGET + span * BUDGET / WINDOW  # never more than the bucket and its refill
    for host in hosts:
        assert "budget.local_fallback" not in host.log_path.read_text()
