"""Two faults at once, end to end (issue 15's defects 1 and 5), through the local host as a process.

* A lost answer (Graph invited and mailed, the 504 hid it), then Graph dark past the deadline: the request
  must not end ``failed`` (a failed owner releases the address, and a repeat would mail again). It keeps
  reading, with no POST and no mail, and ends ``invited`` once Graph answers; a repeat sends nothing.
* Two requests for one address under review: one open review (one approvers' mail); approving it invites
  once, and the second follows it instead of waiting for a review of its own.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from graph_emulator.server import Fault, GraphEmulator
from tests.conftest import FUNCTION_KEY, eventually
from tests.fault_stack import Stack, mails, settle, submit

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

KEY = {"x-functions-key": FUNCTION_KEY}
REVIEW_POLICY = str(Path(__file__).resolve().parent / "policies" / "review.json")  # northwind has approvers


async def test_lost_answer_then_graph_dark_past_the_deadline(stack: Stack, emulator: GraphEmulator) -> None:
    """Defect 1: the POST acts and its answer is lost; Graph then answers nothing (reads included) until well
    past the deadline. The request stays in doubt (public ``retrying``), never ``failed``, sends no second
    POST while dark, and ends ``invited`` with one mail when Graph is back; a repeat sign-up mails nobody."""
    address = "dark@fabrikam.com"
    emulator.faults.append(Fault(kind="acted504", address=address, times=1))
    await stack.start_host(SIGNUP_RETRY_DEADLINE_SECONDS="8", SIGNUP_RETRY_MAX_SECONDS="2")
    dark = Fault(kind="503", operation="*")
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        # The deadline counts from intake, a moment after this (a second's margin for the record's own clock).
        past_deadline = time.time() + 8 + 1
        url = await submit(client, address)
        for _ in range(200):  # the acted 504 has happened: Graph goes dark for everything
            if any(r.operation == "invitation" for r in emulator.requests):
                break
            await asyncio.sleep(0.05)
        emulator.faults.append(dark)
        posts_when_dark = sum(1 for r in emulator.requests if r.operation == "invitation")

        def reads_after_deadline() -> int:
            return sum(1 for r in emulator.requests if r.at > past_deadline and r.method == "GET" and r.status)

        # Proof that the host has met the passed deadline (rather than a fixed 14 s sleep): two attempts after it,
        # each a read Graph refused. A request failed at the deadline is not read again.
        await eventually(lambda: reads_after_deadline() >= 2, 30, "two reads after the deadline", every=0.1)
        view = (await client.get(url)).json()
        assert view["status"] == "retrying", view
        assert sum(1 for r in emulator.requests if r.operation == "invitation") == posts_when_dark
        emulator.faults.remove(dark)
        [view] = await settle(client, [url], within=60)
        assert view["status"] == "invited"
        [again] = await settle(client, [await submit(client, address)], within=30)
        assert again["status"] == "invited"
    assert mails(emulator) == {address: 1}
    acted = [r for r in emulator.requests if r.operation == "invitation" and r.status == 201]
    assert acted == [], "no POST after the lost answer: the guest was found by a read"


async def test_two_pending_requests_for_one_address_make_one_review(stack: Stack, emulator: GraphEmulator) -> None:
    """Defect 5: a second request while one is pending links to it (one approvers' mail, one item to decide);
    approving the first invites once and the second follows it, with no review or mail of its own."""
    address = "twice@northwind.com"
    await stack.start_host(SIGNUP_POLICY=REVIEW_POLICY)
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        first, second = await submit(client, address), await submit(client, address.upper())
        ids = {url.rsplit("/", 1)[1]: url for url in (first, second)}
        for _ in range(300):
            if emulator.sent_mails:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # longer than the host's 2 s queue poll: the second delivery has run too
        assert len(emulator.sent_mails) == 1
        listed = (await client.get("/api/manage/signups", params={"status": "pending_approval"}, headers=KEY)).json()
        # Whichever delivery ran first owns the review; the other follows it and is not listed.
        [owner] = [item["id"] for item in listed["items"] if item["email"].lower() == address]
        assert owner in ids
        for url in ids.values():
            assert (await client.get(url)).json()["status"] == "pending_approval"
        decided = await client.post(f"/api/manage/signups/{owner}/approve", json={"reason": "ok"}, headers=KEY)
        assert decided.status_code == 200
        views = await settle(client, [first, second], within=60)
    assert [v["status"] for v in views] == ["invited", "invited"]
    assert len(emulator.sent_mails) == 1
    assert mails(emulator) == {address: 1}
