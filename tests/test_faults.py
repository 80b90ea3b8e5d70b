"""The lifecycle under faults, end to end: the local host as a process, its own Azurite, the Graph emulator.

After each fault every sign-up is final (or legitimately scheduled), nothing is
lost, and the emulator's record shows at most one Microsoft mail per address.
These are the slow tests: ``pytest -m faults`` runs them alone, ``-m "not
faults"`` skips them; ``make test`` runs them all.
"""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from graph_emulator.server import Fault, GraphEmulator
from tests.conftest import eventually
from tests.fault_stack import Stack, mails, settle, submit

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


async def test_graph_unavailable_for_more_attempts_than_the_hosts_budget(stack: Stack, emulator: GraphEmulator) -> None:
    """Seven 503s in a row (the host alone allowed five deliveries): the sign-up keeps its own schedule and
    ends invited with one mail; other sign-ups are not held up."""
    emulator.faults.append(Fault(kind="503", address="down@fabrikam.com", times=7))
    await stack.start_host(SIGNUP_RETRY_MAX_SECONDS="2")
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        urls = [await submit(client, "down@fabrikam.com"), await submit(client, "fine@fabrikam.com")]
        views = await settle(client, urls)
    assert [v["status"] for v in views] == ["invited", "invited"]
    posts = [r for r in emulator.requests if r.operation == "invitation"]
    assert sum(1 for r in posts if r.body["invitedUserEmailAddress"] == "down@fabrikam.com") == 8
    assert mails(emulator) == {"down@fabrikam.com": 1, "fine@fabrikam.com": 1}


@pytest.mark.parametrize("kind", ["acted504", "acteddrop"])
async def test_graph_acts_but_the_answer_is_lost(stack: Stack, emulator: GraphEmulator, kind: str) -> None:
    """Graph invites and mails, then the answer is lost: the next attempt finds the guest and re-invites
    silently; invited, redeem URL recovered, one mail."""
    emulator.faults.append(Fault(kind=kind, address="lost@fabrikam.com", times=1))
    await stack.start_host()
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        [view] = await settle(client, [await submit(client, "lost@fabrikam.com")])
    assert view["status"] == "invited"
    posts = [r for r in emulator.requests if r.operation == "invitation"]
    assert [r.body["sendInvitationMessage"] for r in posts] == [True, False]
    assert mails(emulator) == {"lost@fabrikam.com": 1}


async def test_azurite_paused_while_invitations_are_in_flight(stack: Stack, emulator: GraphEmulator) -> None:
    """Storage stops answering (SIGSTOP) while Graph holds invitations, which it then performs and answers
    into the pause; storage resumes: every sign-up ends invited, none twice mailed."""
    emulator.faults.append(Fault(kind="hold", times=6))
    await stack.start_host()
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        urls = [await submit(client, f"paused{n}@fabrikam.com") for n in range(6)]
        in_hand = await emulator.wait_held(1)  # Graph has invitations in hand: the host is inside its calls
        os.killpg(stack.azurite.process.pid, signal.SIGSTOP)
        try:
            emulator.faults.clear()  # hold no more: what arrives from now on is answered at once
            emulator.release()
            # Graph answers while storage cannot be written.
            await eventually(lambda: all(r.status is not None for r in in_hand), 5, "Graph answers the held calls")
            assert all(r.status == 201 and r.caller_gone is False for r in in_hand)
            await asyncio.sleep(12)
        finally:
            os.killpg(stack.azurite.process.pid, signal.SIGCONT)
        views = await settle(client, urls, within=120)
    assert {v["status"] for v in views} == {"invited"}
    assert set(mails(emulator).values()) == {1} and len(mails(emulator)) == 6


async def test_429_storm_with_and_without_retry_after(stack: Stack, emulator: GraphEmulator) -> None:
    """Graph's write bucket runs dry, half the 429s without Retry-After: everyone ends invited, once."""
    emulator.config.write_budget = 10
    emulator.config.write_window_seconds = 2
    emulator.bucket = type(emulator.bucket)(10, 2)
    emulator.faults.append(Fault(kind="429", rate=0.3, retry_after=None))
    await stack.start_host(GRAPH_PACING_ENABLED="false")
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        urls = [await submit(client, f"storm{n}@fabrikam.com") for n in range(20)]
        views = await settle(client, urls, within=120)
    assert {v["status"] for v in views} == {"invited"}
    throttled = [r for r in emulator.requests if r.status == 429]
    assert throttled, "the storm never happened"
    assert len(mails(emulator)) == 20 and set(mails(emulator).values()) == {1}


async def test_same_address_repeatedly_and_concurrently(stack: Stack, emulator: GraphEmulator) -> None:
    """Thirty concurrent sign-ups of one address and repeats of another: one invitation per address, every
    request answered 202 and ending with its owner's status."""
    await stack.start_host()
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        urls = list(await asyncio.gather(*(submit(client, "same@fabrikam.com") for _ in range(30))))
        urls += [await submit(client, "Again@Fabrikam.com") for _ in range(3)]
        views = await settle(client, urls)
    assert {v["status"] for v in views} == {"invited"}
    posts = [r for r in emulator.requests if r.operation == "invitation" and r.status == 201]
    assert sorted(r.body["invitedUserEmailAddress"].lower() for r in posts) == [
        "again@fabrikam.com",
        "same@fabrikam.com",
    ]


async def test_host_killed_mid_invitation_and_restarted(stack: Stack, emulator: GraphEmulator) -> None:
    """The host dies (SIGKILL) while Graph is acting on an invitation; its message reappears, waits out the
    lease, and a new host finishes the sign-up with a silent re-invite: invited, one mail."""
    # Graph performs the invitation (and mails), then holds its answer until the host is dead.
    emulator.faults.append(Fault(kind="actedhold", address="killed@fabrikam.com", times=1))
    # In Azure the dead host's message reappears after 10 minutes; here after 8 s.
    short = {"GRAPH_TIMEOUT_SECONDS": "3", "GRAPH_PACING_MAX_WAIT_SECONDS": "1", "GRAPH_THROTTLE_MAX_WAIT_SECONDS": "1"}
    await stack.start_host(DEVHOST_RECEIVE_VISIBILITY_SECONDS="8", **short)
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        url = await submit(client, "killed@fabrikam.com")
    [held] = await emulator.wait_held(1)
    assert held.acted and not emulator.hung_up(held)
    assert stack.host is not None
    os.killpg(stack.host.process.pid, signal.SIGKILL)
    await asyncio.to_thread(stack.host.process.wait)
    stack.host = None
    # The kill happened inside the call: the emulator, still holding it, sees its caller gone.
    await eventually(lambda: emulator.hung_up(held), 5, "the killed host's connection closes")
    emulator.release()  # Graph's answer goes nowhere
    await stack.start_host()
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        [view] = await settle(client, [url.replace(url.split("/api/")[0], stack.url)], within=120)
    assert view["status"] == "invited"
    assert held.caller_gone is True
    posts = [r for r in emulator.requests if r.operation == "invitation"]
    assert [(r.body["sendInvitationMessage"], r.status) for r in posts] == [(True, 201), (False, 201)]
    assert mails(emulator) == {"killed@fabrikam.com": 1}
