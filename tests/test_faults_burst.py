"""A thousand mixed sign-ups at once through one host: a module of its own, so that ``make test``'s workers
(one module each at a time) run this, the suite's longest test, beside the other fault tests."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from graph_emulator.server import GraphEmulator
from tests.conftest import eventually
from tests.fault_stack import Stack, mails, settle, submit

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


async def test_burst_of_a_thousand_mixed_signups(stack: Stack, emulator: GraphEmulator) -> None:
    """1,000 concurrent sign-ups, 600 distinct addresses and 400 repeats: all answered 202, all final, one
    invitation (and one mail) per distinct address."""
    emulator.config.write_budget = 30000
    emulator.bucket = type(emulator.bucket)(30000, 150)
    await stack.start_host(GRAPH_WRITE_BUDGET="30000")
    addresses = [f"burst{n % 600:03d}@fabrikam.com" for n in range(1000)]
    async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=httpx.Limits(max_connections=64)) as client:
        urls = list(await asyncio.gather(*(submit(client, a) for a in addresses)))
        # Watch the emulator's count first (as bench/common.py does): polling a thousand statuses each second
        # would compete with the drain it waits for.
        await eventually(lambda: len(emulator.invitations) >= 600, 180, "600 invitations performed", every=0.5)
        views = await settle(client, urls, within=60)
    assert len(urls) == 1000 and {v["status"] for v in views} == {"invited"}
    performed = [r for r in emulator.requests if r.operation == "invitation" and r.status == 201]
    assert len(performed) == 600
    assert len(mails(emulator)) == 600 and set(mails(emulator).values()) == {1}
