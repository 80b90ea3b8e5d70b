"""The guest lifecycle end to end: the local host as a process (its timer sweeping every second), Azurite and
the Graph emulator, with the rules' day shortened to one second (``GUEST_LIFECYCLE_DAY_SECONDS``).

Guests are invited through the real sign-up path and registered by the lifecycle. One never redeems: it
is reminded twice and blocked. Another is reviewed, kept, reviewed again, removed (blocked), restored,
and then, nobody answering, blocked and deleted after the grace period. A third has no rules and a
fourth was never made by the portal: neither is ever touched. The fault tests lose Graph's answers and
kill the host inside a call: still at most one mail per reminder and one write per action.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph_emulator.server import Fault, GraphEmulator
from tests.conftest import FUNCTION_KEY, eventually
from tests.fault_stack import Stack, settle, submit

# The fault stack's fixtures (conftest: own_azurite, stack): a dedicated Azurite whose pause disturbs no other
# test, and a host process on it.

pytestmark = [pytest.mark.e2e]

KEY = {"x-functions-key": FUNCTION_KEY}
APPROVER = "boss@contoso.com"
POLICY = {
    "profiles": [
        {
            "name": "unredeemed",
            "domains": ["fabrikam.com"],
            "action": "approve",
            "groups": [],
            "approvers": [APPROVER],
            "lifecycle": {"unredeemedReminderDays": [3, 6], "unredeemedExpiryDays": 9, "onRemove": "blockSignIn"},
        },
        {
            "name": "reviewed",
            "domains": ["tailspin.com"],
            "action": "approve",
            "groups": [],
            "approvers": [APPROVER],
            "lifecycle": {
                "reviewEveryDays": 6,
                "reviewGraceDays": 3,
                "onNoAnswer": "blockSignInAndDelete",
                "onRemove": "blockSignIn",
                "deleteAfterDays": 3,
            },
        },
        {"name": "plain", "domains": ["wingtip.com"], "action": "approve", "groups": []},
    ]
}


async def start(stack: Stack, tmp_path: Path, **extra: str) -> None:
    path = tmp_path / "lifecycle-policy.json"
    path.write_text(json.dumps(POLICY), encoding="utf-8")
    await stack.start_host(
        SIGNUP_POLICY=str(path),
        GUEST_LIFECYCLE_DAY_SECONDS="1",
        GUEST_SWEEP_SCHEDULE="*/1 * * * * *",
        **extra,
    )


def user_id(emulator: GraphEmulator, address: str) -> str:
    return next(str(u["id"]) for u in emulator.users.values() if str(u.get("mail", "")).lower() == address)


def writes(emulator: GraphEmulator, uid: str) -> list[tuple[str, Any]]:
    """Every write Graph received for this user: (method, accountEnabled or None)."""
    found = []
    for r in emulator.requests:
        if r.method in ("PATCH", "DELETE") and r.path.rstrip("/").endswith(f"/users/{uid}"):
            found.append((r.method, r.body.get("accountEnabled") if isinstance(r.body, dict) else None))
        elif r.method == "POST" and r.path.endswith(f"/deletedItems/{uid}/restore"):
            found.append(("RESTORE", None))
    return found


def mails_to(emulator: GraphEmulator, address: str) -> list[dict[str, Any]]:
    return [m for m in emulator.sent_mails if address in m["to"]]


async def reviews(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/api/manage/reviews", headers=KEY)
    assert response.status_code == 200, response.text
    return [item["userId"] for item in response.json()["items"]]


async def wait_listed(client: httpx.AsyncClient, uid: str, within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while uid not in await reviews(client):
        assert loop.time() < deadline, "the guest was not put up for review"
        await asyncio.sleep(0.3)


async def decide(client: httpx.AsyncClient, uid: str, decision: str) -> str:
    body = {"userIds": [uid], "decision": decision, "reason": "scenario"}
    response = await client.post("/api/manage/reviews/decisions", json=body, headers=KEY)
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    return str(result["result"])


async def test_the_guest_lifecycle_scenario(stack: Stack, emulator: GraphEmulator, tmp_path: Path) -> None:
    await start(stack, tmp_path)
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as client:
        urls = [await submit(client, a) for a in ("late@fabrikam.com", "kept@tailspin.com", "plain@wingtip.com")]
        assert [v["status"] for v in await settle(client, urls)] == ["invited"] * 3
        late, kept, plain = (
            user_id(emulator, a) for a in ("late@fabrikam.com", "kept@tailspin.com", "plain@wingtip.com")
        )
        stranger = str(
            emulator.add_user(mail="stranger@fabrikam.com", userType="Guest", externalUserState="PendingAcceptance")[
                "id"
            ]
        )
        emulator.users[kept]["externalUserState"] = "Accepted"  # it redeemed
        # Reviewed, kept.
        await wait_listed(client, kept)
        assert await decide(client, kept, "keep") == "kept"
        assert kept not in await reviews(client)
        # Reviewed again, removed: blocked.
        await wait_listed(client, kept)
        assert await decide(client, kept, "remove") == "removed"
        assert emulator.users[kept]["accountEnabled"] is False
        blocked = (await client.get("/api/manage/guests?state=blocked", headers=KEY)).json()["items"]
        assert kept in [i["userId"] for i in blocked]
        # Restored from the page.
        restored = await client.post(f"/api/manage/guests/{kept}/restore", json={}, headers=KEY)
        assert restored.status_code == 200 and restored.json() == {"userId": kept, "state": "active"}
        assert emulator.users[kept]["accountEnabled"] is True
        # Nobody answers the next review: blocked after the grace period, deleted deleteAfterDays later.
        await eventually(lambda: kept in emulator.lifecycle.deleted, 40, "the unanswered guest deleted", every=0.3)
        deleted = (await client.get("/api/manage/guests?state=deleted", headers=KEY)).json()["items"]
        assert [i["userId"] for i in deleted] == [kept] and deleted[0]["restorableUntil"]
        # The unredeemed guest: reminded twice, then blocked.
        await eventually(lambda: emulator.users[late].get("accountEnabled") is False, 30, "the late guest blocked")
        await asyncio.sleep(3)  # a few more sweeps: nothing more happens to anyone
    assert writes(emulator, late) == [("PATCH", False)]
    reminders = mails_to(emulator, "late@fabrikam.com")
    assert len(reminders) == 2 and all("/redeem" in m["body"] or "redeem" in m["body"].lower() for m in reminders)
    assert writes(emulator, kept) == [("PATCH", False), ("PATCH", True), ("PATCH", False), ("DELETE", None)]
    assert mails_to(emulator, "kept@tailspin.com") == []
    assert len(mails_to(emulator, APPROVER)) == 3  # one digest for each of the three reviews (three rules' days)
    for untouched, address in ((plain, "plain@wingtip.com"), (stranger, "stranger@fabrikam.com")):
        assert writes(emulator, untouched) == [] and mails_to(emulator, address) == []
    assert emulator.users[stranger].get("accountEnabled") is not False


@pytest.mark.faults
async def test_lost_answers_leave_one_mail_and_one_write(stack: Stack, emulator: GraphEmulator, tmp_path: Path) -> None:
    """The first reminder's sendMail and the block's PATCH act, then lose their answers: never sent again."""
    emulator.faults.append(Fault(kind="acteddrop", operation="send-mail", times=1))
    emulator.faults.append(Fault(kind="acteddrop", operation="user-update", times=1))
    await start(stack, tmp_path)
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as client:
        [view] = await settle(client, [await submit(client, "lossy@fabrikam.com")])
    assert view["status"] == "invited"
    lossy = user_id(emulator, "lossy@fabrikam.com")
    await eventually(lambda: emulator.users[lossy].get("accountEnabled") is False, 40, "the guest blocked")
    await asyncio.sleep(3)
    assert [r.fault for r in emulator.requests if r.operation in ("send-mail", "user-update")][:1] == ["acteddrop"]
    assert len(mails_to(emulator, "lossy@fabrikam.com")) == 2  # the lost one counted as sent, the second sent
    assert writes(emulator, lossy) == [("PATCH", False)]


@pytest.mark.faults
async def test_a_host_killed_inside_the_block_leaves_one_write(
    stack: Stack, emulator: GraphEmulator, tmp_path: Path
) -> None:
    """Graph blocks the guest and holds its answer; the host dies (SIGKILL); a new host settles the mark by a
    read once the lease has passed: one PATCH, the guest recorded blocked."""
    emulator.faults.append(Fault(kind="actedhold", operation="user-update", times=1))
    await start(stack, tmp_path)
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as client:
        [view] = await settle(client, [await submit(client, "killed@fabrikam.com")])
    assert view["status"] == "invited"
    killed = user_id(emulator, "killed@fabrikam.com")
    [held] = await emulator.wait_held(1)
    assert held.acted and stack.host is not None
    os.killpg(stack.host.process.pid, signal.SIGKILL)
    await asyncio.to_thread(stack.host.process.wait)
    stack.host = None
    emulator.release()
    await start(stack, tmp_path)
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as client:

        async def listed() -> list[str]:
            response = await client.get("/api/manage/guests?state=blocked", headers=KEY)
            return [i["userId"] for i in response.json()["items"]]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while killed not in await listed():
            assert loop.time() < deadline, "the mark was not settled"
            await asyncio.sleep(0.5)
    assert writes(emulator, killed) == [("PATCH", False)]
    assert len(mails_to(emulator, "killed@fabrikam.com")) == 2


@pytest.mark.faults
async def test_storage_paused_while_graph_blocks_leaves_one_write(
    stack: Stack, emulator: GraphEmulator, tmp_path: Path
) -> None:
    """Storage stops answering (SIGSTOP) while Graph holds the block, which it performs and answers into the
    pause; the settling write fails; storage resumes and a later sweep settles the mark by a read: one PATCH."""
    emulator.faults.append(Fault(kind="actedhold", operation="user-update", times=1))
    await start(stack, tmp_path)
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as client:
        [view] = await settle(client, [await submit(client, "paused@fabrikam.com")])
    assert view["status"] == "invited"
    paused = user_id(emulator, "paused@fabrikam.com")
    [held] = await emulator.wait_held(1)
    assert held.acted
    os.killpg(stack.azurite.process.pid, signal.SIGSTOP)
    try:
        emulator.release()
        await asyncio.sleep(8)  # the host's settling write meets the pause and gives up
    finally:
        os.killpg(stack.azurite.process.pid, signal.SIGCONT)
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            response = await client.get("/api/manage/guests?state=blocked", headers=KEY)
            if response.status_code == 200 and paused in [i["userId"] for i in response.json()["items"]]:
                break
            assert loop.time() < deadline, "the mark was not settled"
            await asyncio.sleep(0.5)
    assert writes(emulator, paused) == [("PATCH", False)]
    assert len(mails_to(emulator, "paused@fabrikam.com")) == 2
