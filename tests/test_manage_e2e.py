"""The admin routes end to end: the local host as a process (function keys, the Easy Auth stand-in),
Azurite, the real msgraph-sdk and the Graph emulator (approver mail, groups, the organisation's mail)."""

from __future__ import annotations

import asyncio
import base64
import html
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph_emulator.server import GraphEmulator
from tests.conftest import FUNCTION_KEY, host_env, problem_of, running_host

pytestmark = pytest.mark.e2e

REVIEW_POLICY = str(Path(__file__).resolve().parent / "policies" / "review.json")
GROUPS = ("3f7c2d1e-9a4b-4c8d-b1e2-5a6f7c8d9e01", "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
KEY = {"x-functions-key": FUNCTION_KEY}


def _env(azurite: str, graph: str, **extra: str) -> dict[str, str]:
    return host_env(azurite, graph, SIGNUP_POLICY=REVIEW_POLICY, ORGANISATION_NAME="Contoso", **extra)


@pytest.fixture(scope="module")
async def keyed_host(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A host whose admin routes take function keys (the default)."""
    async with running_host(_env(azurite, emulator_server[1]), tmp_path_factory.mktemp("keyed")) as (_, url):
        yield url


@pytest.fixture(scope="module")
async def easy_auth_host(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A host standing in for App Service Authentication, the admin routes needing the approver role."""
    env = _env(
        azurite,
        emulator_server[1],
        DEVHOST_EASY_AUTH="1",
        MANAGE_EASY_AUTH_ROLE="Signup.Approve",
        MANAGE_CONVERT_EASY_AUTH_ROLE="Signup.Convert",
    )
    async with running_host(env, tmp_path_factory.mktemp("easyauth")) as (_, url):
        yield url


@pytest.fixture
async def client(keyed_host: str, emulator: GraphEmulator) -> Any:
    for group in GROUPS:
        emulator.groups[group] = set()
    async with httpx.AsyncClient(base_url=keyed_host, timeout=10) as http:
        yield http


async def _until(
    client: httpx.AsyncClient, url: str, statuses: set[str], within: float = 30, *, settled: bool = False
) -> dict[str, Any]:
    """Poll an admin view until its status is one of ``statuses`` (and, with ``settled``, no group step is due:
    the steps after an invitation run in the same delivery, just after the invited write)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        body = (await client.get(url, headers=KEY)).json()
        # A step's audit entry is written just after the record shows the step done: wait for both.
        steps_left = settled and (
            any(g["state"] == "due" for g in body.get("groups") or [])
            or (bool(body.get("groups")) and "group_added" not in [h["event"] for h in body.get("history") or []])
        )
        if body["status"] in statuses and not steps_left:
            return dict(body)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {body['status']} after {within}s: {body}")
        await asyncio.sleep(0.2)


async def _submit(client: httpx.AsyncClient, email: str, name: str = "Sam Guest") -> dict[str, Any]:
    response = await client.post(
        "/api/signups", json={"email": email, "displayName": name, "company": "Northwind", "justification": "Falcon"}
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


async def test_admin_routes_refuse_anonymous_and_wrong_key_callers(client: httpx.AsyncClient) -> None:
    for path in ("/api/manage/signups", "/api/manage/signups/AAAAAAAAAAAAAAAAAAAAAA"):
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers={"x-functions-key": "wrong"})).status_code == 401
        assert (await client.get(path, params={"code": "wrong"})).status_code == 401
    denied = await client.post("/api/manage/signups/AAAAAAAAAAAAAAAAAAAAAA/approve")
    assert denied.status_code == 401
    ok = await client.get("/api/manage/signups", params={"code": FUNCTION_KEY, "status": "pending_approval"})
    assert ok.status_code == 200 and set(ok.json()) == {"items", "continuationToken"}
    missing = await client.get("/api/manage/signups/AAAAAAAAAAAAAAAAAAAAAA", headers=KEY)
    assert missing.status_code == 404 and problem_of(missing.json())["type"].endswith("/problems/not-found")
    bad = await client.get("/api/manage/signups", params={"status": "nonsense"}, headers=KEY)
    assert bad.status_code == 400 and "status" in problem_of(bad.json())["errors"]


async def test_review_approve_invite_with_groups_and_approver_mail(
    client: httpx.AsyncClient, emulator: GraphEmulator
) -> None:
    """pending_approval → the approvers' mail → listed → approved by key → invited, added to the group."""
    accepted = await _submit(client, "sam@northwind.com")
    assert accepted["status"] == "pending_approval"
    sid = accepted["id"]
    for _ in range(100):
        if emulator.sent_mails:
            break
        await asyncio.sleep(0.1)
    [mail] = emulator.sent_mails
    assert mail["to"] == ["partner-admins@contoso.com"] and sid in mail["body"]
    listed = (await client.get("/api/manage/signups", params={"status": "pending_approval"}, headers=KEY)).json()
    assert sid in [item["id"] for item in listed["items"]]
    first = await client.post(f"/api/manage/signups/{sid}/approve", json={"reason": "Known partner"}, headers=KEY)
    assert first.status_code == 200 and first.json()["result"] == "decided"
    again = await client.post(f"/api/manage/signups/{sid}/approve", json={}, headers=KEY)
    assert again.status_code == 200 and again.json()["result"] == "already_decided"
    conflict = await client.post(f"/api/manage/signups/{sid}/deny", json={"reason": "Changed my mind"}, headers=KEY)
    assert conflict.status_code == 409 and problem_of(conflict.json())["current"]["status"] != "pending_approval"
    detail = await _until(client, f"/api/manage/signups/{sid}", {"invited"}, settled=True)
    assert detail["groups"] == [{"id": GROUPS[0], "state": "done"}]
    assert detail["decision"]["by"] == "function-key" and detail["decision"]["reason"] == "Known partner"
    events = [h["event"] for h in detail["history"]]
    assert events[:4] == ["received", "policy", "approver_mail_sent", "approved"]
    assert "invited" in events and "group_added" in events
    assert detail["invitation"]["invitedUserId"] in emulator.groups[GROUPS[0]]
    public = (await client.get(f"/api/signups/{sid}")).json()
    assert public["status"] == "invited" and "Known partner" not in json.dumps(public)


async def test_the_organisations_mail_replaces_microsofts(client: httpx.AsyncClient, emulator: GraphEmulator) -> None:
    sid = (await _submit(client, "ana@fabrikam.com", "Ana <b>Bold</b>"))["id"]
    detail = await _until(client, f"/api/manage/signups/{sid}", {"invited"})
    for _ in range(100):
        if emulator.sent_mails:
            break
        await asyncio.sleep(0.1)
    [invitation] = [r for r in emulator.requests if r.operation == "invitation"]
    assert invitation.body["sendInvitationMessage"] is False
    [mail] = emulator.sent_mails
    assert mail["to"] == ["ana@fabrikam.com"] and mail["subject"] == "Welcome to Contoso"
    assert "Ana &lt;b&gt;Bold&lt;/b&gt;" in mail["body"]
    redeem = detail["invitation"]["redeemUrl"]
    assert redeem and html.escape(redeem, quote=True) in mail["body"]
    final = await _until(client, f"/api/manage/signups/{sid}", {"invited"})
    assert {g["state"] for g in final["groups"]} == {"done"}


async def test_a_denied_address_is_refused_at_once(client: httpx.AsyncClient) -> None:
    """A denial is remembered: the address's next sign-up ends denied with no new review, while its requester
    sees what any request under review shows (202, pending_approval), so nobody learns an approver's decision."""
    sid = (await _submit(client, "eve@northwind.com"))["id"]
    missing_reason = await client.post(f"/api/manage/signups/{sid}/deny", json={}, headers=KEY)
    assert missing_reason.status_code == 400 and "reason" in problem_of(missing_reason.json())["errors"]
    denied = await client.post(f"/api/manage/signups/{sid}/deny", json={"reason": "Not a partner"}, headers=KEY)
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    public = (await client.get(f"/api/signups/{sid}")).json()
    assert public["status"] == "denied" and "Not a partner" not in json.dumps(public)
    again = await client.post(
        "/api/signups", json={"email": "EVE@northwind.com", "displayName": "Eve", "company": "N", "justification": "x"}
    )
    assert again.status_code == 202 and again.json()["status"] == "pending_approval"
    repeat = again.json()["id"]
    detail = await _until(client, f"/api/manage/signups/{repeat}", {"denied"})
    assert detail["policy"]["reason"] == "denied-before"
    assert (await client.get(f"/api/signups/{repeat}")).json()["status"] == "pending_approval"


def _forged(roles: list[str]) -> str:
    claims = [{"typ": "name", "val": "mallory"}, *({"typ": "roles", "val": r} for r in roles)]
    return base64.b64encode(json.dumps({"claims": claims, "role_typ": "roles"}).encode()).decode()


async def test_easy_auth_principals_with_the_role_and_nobody_else(easy_auth_host: str, emulator: GraphEmulator) -> None:
    async with httpx.AsyncClient(base_url=easy_auth_host, timeout=10) as anonymous:
        # A forged principal header is removed by the front end, as App Service Authentication removes it.
        forged = await anonymous.get(
            "/api/manage/signups", headers={"X-MS-CLIENT-PRINCIPAL": _forged(["Signup.Approve"])}
        )
        assert forged.status_code == 401 and problem_of(forged.json())["type"].endswith("/problems/unauthenticated")
        # A function key is no way in here: the routes take principals.
        assert (await anonymous.get("/api/manage/signups", headers=KEY)).status_code == 401
    async with httpx.AsyncClient(base_url=easy_auth_host, timeout=10) as reader:
        signed_in = await reader.post("/.auth/login/dev", data={"name": "reader@contoso.com", "roles": "Reader"})
        assert signed_in.status_code == 303
        refused = await reader.get("/api/manage/signups")
        assert refused.status_code == 403 and problem_of(refused.json())["type"].endswith("/problems/access-denied")
    async with httpx.AsyncClient(base_url=easy_auth_host, timeout=10) as approver:
        await approver.post("/.auth/login/dev", data={"name": "ann@contoso.com", "roles": "Signup.Approve"})
        me = (await approver.get("/.auth/me")).json()
        assert me[0]["user_id"] == "ann@contoso.com"
        sid = (await _submit(approver, "kim@northwind.com"))["id"]
        decided = await approver.post(f"/api/manage/signups/{sid}/deny", json={"reason": "Unknown"})
        assert decided.status_code == 200 and decided.json()["decision"]["by"] == "ann@contoso.com"


async def test_group_assignment_survives_graph_faults(client: httpx.AsyncClient, emulator: GraphEmulator) -> None:
    """Group additions that fail (a 503, a lost answer after Graph acted) are retried until the guest is in."""
    from graph_emulator.server import Fault

    emulator.faults += [
        Fault("503", operation="group-member-ref", times=1, retry_after=None),
        Fault("acted504", operation="group-member-ref", times=1),
    ]
    sid = (await _submit(client, "max@fabrikam.com", "Max"))["id"]
    deadline = asyncio.get_running_loop().time() + 40
    while True:
        detail = (await client.get(f"/api/manage/signups/{sid}", headers=KEY)).json()
        done = detail["status"] == "invited" and all(g["state"] == "done" for g in detail["groups"])
        if done and emulator.sent_mails:  # the mail follows the groups' last step: wait for it too
            break
        assert asyncio.get_running_loop().time() < deadline, detail
        await asyncio.sleep(0.3)
    user = detail["invitation"]["invitedUserId"]
    assert all(user in emulator.groups[g] for g in GROUPS)
    adds = [r for r in emulator.requests if r.operation == "group-member-ref"]
    assert len(adds) >= 4  # two faults, then the retries (an "already a member" answer counts as done)
    assert len(emulator.sent_mails) == 1  # the organisation's mail went once, after the groups


async def _status(client: httpx.AsyncClient, sid: str, headers: dict[str, str] | None = None) -> str:
    return str((await client.get(f"/api/manage/signups/{sid}", headers=headers)).json()["status"])


async def test_a_cross_site_approve_is_refused_even_with_a_session(easy_auth_host: str) -> None:
    """What a foreign page can make a signed-in approver's browser send is refused; the page's own JSON works."""
    async with httpx.AsyncClient(base_url=easy_auth_host, timeout=10) as approver:
        await approver.post("/.auth/login/dev", data={"name": "ann@contoso.com", "roles": "Signup.Approve"})
        sid = (await _submit(approver, "cody@northwind.com"))["id"]
        await _until(approver, f"/api/manage/signups/{sid}", {"pending_approval"})
        url = f"/api/manage/signups/{sid}/approve"
        # <form enctype="text/plain" method="post"> auto-submitted by another site, the session cookie attached.
        forged = {"Content-Type": "text/plain", "Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site"}
        refused = await approver.post(url, content=b'{"reason": "x"}', headers=forged)
        assert refused.status_code == 403 and problem_of(refused.json())["type"] == "/problems/cross-site"
        # Each signal alone is enough, JSON or not.
        for headers in (
            {"Content-Type": "application/json", "Origin": "https://attacker.example"},
            {"Content-Type": "application/json", "Origin": "null"},
            {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
        ):
            alone = await approver.post(url, content=b"{}", headers=headers)
            assert alone.status_code == 403, (headers, alone.text)
        # Same site but not JSON (what a form can send without a preflight): 415.
        for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            wrong = await approver.post(url, content=b"", headers={"Content-Type": media, "Origin": easy_auth_host})
            assert wrong.status_code == 415, (media, wrong.text)
            assert problem_of(wrong.json())["type"] == "/problems/unsupported-media-type"
        deny = await approver.post(
            f"/api/manage/signups/{sid}/deny", data={"reason": "x"}, headers={"Origin": "https://attacker.example"}
        )
        assert deny.status_code == 403
        assert await _status(approver, sid) == "pending_approval"
        # The approver's page: same origin, JSON.
        own = {"Origin": easy_auth_host, "Sec-Fetch-Site": "same-origin"}
        approved = await approver.post(url, json={}, headers=own)
        assert approved.status_code == 200 and approved.json()["decision"]["by"] == "ann@contoso.com"


async def test_function_keys_get_the_same_rules(client: httpx.AsyncClient) -> None:
    sid = (await _submit(client, "dora@northwind.com"))["id"]
    await _until(client, f"/api/manage/signups/{sid}", {"pending_approval"})
    url = f"/api/manage/signups/{sid}/approve"
    plain = await client.post(url, content=b"", headers={**KEY, "Content-Type": "text/plain"})
    assert plain.status_code == 415
    foreign = await client.post(url, json={}, headers={**KEY, "Origin": "https://attacker.example"})
    assert foreign.status_code == 403 and problem_of(foreign.json())["type"] == "/problems/cross-site"
    conversion = await client.post(
        "/api/manage/conversions", json={"user": "x@contoso.com"}, headers={**KEY, "Sec-Fetch-Site": "cross-site"}
    )
    assert conversion.status_code == 403
    assert await _status(client, sid, KEY) == "pending_approval"
    assert (await client.post(url, json={}, headers=KEY)).status_code == 200  # a script: no Origin, JSON


async def test_approving_and_converting_are_separate_roles(easy_auth_host: str) -> None:
    """The converter reads but cannot decide; the approver cannot convert; the page shows only what is allowed."""
    async with httpx.AsyncClient(base_url=easy_auth_host, timeout=10) as converter:
        await converter.post("/.auth/login/dev", data={"name": "cy@contoso.com", "roles": "Signup.Convert"})
        sid = (await _submit(converter, "eli@northwind.com"))["id"]
        await _until(converter, f"/api/manage/signups/{sid}", {"pending_approval"})
        assert (await converter.get(f"/api/manage/signups/{sid}")).status_code == 200
        decided = await converter.post(f"/api/manage/signups/{sid}/approve", json={})
        assert decided.status_code == 403 and problem_of(decided.json())["type"] == "/problems/access-denied"
        page = (await converter.get("/api/manage")).text
        assert 'data-can-approve="false"' in page and 'id="no-approver-role"' in page
    async with httpx.AsyncClient(base_url=easy_auth_host, timeout=10) as approver:
        await approver.post("/.auth/login/dev", data={"name": "ann@contoso.com", "roles": "Signup.Approve"})
        converted = await approver.post("/api/manage/conversions", json={"user": "bob@contoso.com"})
        assert converted.status_code == 403 and "Signup.Convert" in problem_of(converted.json())["detail"]
        page = (await approver.get("/api/manage")).text
        assert 'data-can-approve="true"' in page and "no-approver-role" not in page
        assert await _status(approver, sid) == "pending_approval"
