"""End to end: the local host as a process, real Azurite, the real msgraph-sdk and the Graph emulator."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.queue.aio import QueueClient

from graph_emulator.server import Fault, GraphEmulator
from shared.storage import expand_connection_string
from tests.conftest import FUNCTION_KEY, host_env, problem_of, running_host

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def host(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    """One local host for this module, configured entirely through its environment."""
    _, graph = emulator_server
    logs = tmp_path_factory.mktemp("devhost")
    env = host_env(azurite, graph)
    async with running_host(env, logs) as (service, url):
        yield {"url": url, "env": env, "service": service}


@pytest.fixture
async def client(host: dict[str, Any], emulator: GraphEmulator) -> Any:
    async with httpx.AsyncClient(base_url=host["url"], timeout=10) as http:
        yield http


async def _until(client: httpx.AsyncClient, url: str, statuses: set[str], within: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        body = (await client.get(url)).json()
        if body["status"] in statuses:
            return dict(body)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {body['status']} after {within}s: {body}")
        await asyncio.sleep(0.2)


async def _after_the_workers_next_poll(client: httpx.AsyncClient, host: dict[str, Any]) -> None:
    """Return once the host's worker has polled the queue after everything sent so far and finished it all.

    A sentinel sign-up is queued behind anything sent before; once it is invited the worker has received
    what was queued ahead of it (Azurite hands messages out in order), and once the queue is empty every
    received message has been worked off. A negative check after this cannot pass for want of waiting.
    """
    sentinel = await client.post(
        "/api/signups", json={"email": f"sentinel-{uuid.uuid4().hex[:8]}@fabrikam.com", "displayName": "S"}
    )
    assert sentinel.status_code == 202, sentinel.text
    assert (await _until(client, sentinel.headers["Location"], {"invited", "failed"}))["status"] == "invited"
    env = host["env"]
    queue = QueueClient.from_connection_string(
        expand_connection_string(env["AzureWebJobsStorage"]), env["SIGNUP_QUEUE"]
    )
    async with queue:
        for _ in range(150):
            if (await queue.get_queue_properties()).approximate_message_count == 0:
                return
            await asyncio.sleep(0.2)
    raise AssertionError("the queue did not drain within 30 s")


async def _invitations_for(emulator: GraphEmulator, address: str) -> list[Any]:
    return [
        r
        for r in emulator.requests
        if r.operation == "invitation" and (r.body or {}).get("invitedUserEmailAddress") == address
    ]


async def test_signup_is_accepted_and_ends_invited(client: httpx.AsyncClient, emulator: GraphEmulator) -> None:
    """POST → 202 with Location and statusUrl; the worker invites; the status URL shows invited."""
    response = await client.post(
        "/api/signups",
        json={
            "email": " Sam.Guest@Fabrikam.COM ",
            "displayName": "Sam Guest",
            "company": "Fabrikam",
            "justification": "Project Falcon",
        },
    )
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "status", "statusUrl"}
    assert body["status"] == "queued"
    assert response.headers["Location"] == f"/api/signups/{body['id']}"
    assert body["statusUrl"] == f"{client.base_url}/api/signups/{body['id']}".replace("//api", "/api")
    assert len(body["id"]) >= 22  # 128 random bits, URL-safe

    final = await _until(client, response.headers["Location"], {"invited", "failed"})
    assert final["status"] == "invited" and final["error"] is None
    assert set(final) == {"id", "status", "createdAt", "updatedAt", "nextAttemptAt", "error"}
    text = json.dumps(final)
    assert "fabrikam" not in text.lower() and "redeem" not in text.lower()

    [post] = await _invitations_for(emulator, "Sam.Guest@fabrikam.com")
    assert post.findings == [] and post.status == 201
    assert post.body["inviteRedirectUrl"] == "https://myapps.microsoft.com"
    assert post.body["invitedUserDisplayName"] == "Sam Guest"


async def test_form_post_from_a_plain_html_form(client: httpx.AsyncClient, emulator: GraphEmulator) -> None:
    """application/x-www-form-urlencoded works like JSON, IDNA domain included."""
    response = await client.post("/api/signups", data={"email": "alex@fäbrikam.com", "displayName": "Alex"})
    assert response.status_code == 202
    final = await _until(client, response.json()["statusUrl"], {"invited", "failed"})
    assert final["status"] == "invited"
    assert len(await _invitations_for(emulator, "alex@xn--fbrikam-5wa.com")) == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "fields"),
    [
        pytest.param(
            {"json": {"email": "a+b@x.com", "displayName": 7, "role": "admin"}},
            400,
            {"email", "displayName", "role"},
            id="fields",
        ),
        pytest.param(
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            {"body"},
            id="malformed-json",
        ),
        pytest.param({"content": b"email=x", "headers": {"Content-Type": "text/plain"}}, 415, None, id="415"),
        pytest.param({"content": b"{}", "headers": {}}, 415, None, id="no-content-type"),
        pytest.param(
            {"content": b'{"email": "' + b"a" * 17000 + b'"}', "headers": {"Content-Type": "application/json"}},
            413,
            None,
            id="413",
        ),
    ],
)
async def test_bad_input_is_a_problem_and_queues_nothing(
    client: httpx.AsyncClient,
    emulator: GraphEmulator,
    host: dict[str, Any],
    kwargs: dict[str, Any],
    status: int,
    fields: set[str] | None,
) -> None:
    """Every refusal is application/problem+json with the right status; nothing reaches Graph."""
    response = await client.post("/api/signups", **kwargs)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = problem_of(response.json())
    assert problem["status"] == status
    if fields is not None:
        assert set(problem["errors"]) == fields
    await _after_the_workers_next_poll(client, host)
    invited = [r.body["invitedUserEmailAddress"] for r in emulator.requests if r.operation == "invitation"]
    assert [a for a in invited if not a.startswith("sentinel-")] == []


async def test_wrong_methods_and_unknown_ids(client: httpx.AsyncClient) -> None:
    """405 with Allow for the wrong method; 404 problem for unknown or malformed ids."""
    for method, url, allow in (
        ("GET", "/api/signups", "POST"),
        ("DELETE", "/api/signups/abc", "GET"),
        ("PUT", "/api/signups", "POST"),
    ):
        response = await client.request(method, url)
        assert response.status_code == 405, (method, url)
        assert response.headers["Allow"] == allow
        problem_of(response.json())
    for unknown in ("A" * 22, "not-an-id", "..%2F..%2Fetc"):
        response = await client.get(f"/api/signups/{unknown}")
        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith("application/problem+json")


async def test_permanent_graph_failure_is_visible(client: httpx.AsyncClient, emulator: GraphEmulator) -> None:
    """A 403 from Graph ends the sign-up as failed with Graph's error code, after one call."""
    emulator.faults.append(Fault(kind="403", address="blocked@fabrikam.com"))
    response = await client.post("/api/signups", json={"email": "blocked@fabrikam.com", "displayName": "B"})
    final = await _until(client, response.json()["statusUrl"], {"invited", "failed"})
    assert final["status"] == "failed"
    assert final["error"]["code"] == "Authorization_RequestDenied"
    assert len(await _invitations_for(emulator, "blocked@fabrikam.com")) == 1


async def test_transient_failure_is_retried_on_the_workers_schedule(
    client: httpx.AsyncClient, emulator: GraphEmulator
) -> None:
    """A 503 schedules a retry (re-enqueued with a delay, no exception); the second attempt invites."""
    emulator.faults.append(Fault(kind="503", address="flaky@fabrikam.com", times=1))
    response = await client.post("/api/signups", json={"email": "flaky@fabrikam.com", "displayName": "F"})
    final = await _until(client, response.json()["statusUrl"], {"invited", "failed"}, within=40)
    assert final["status"] == "invited"
    assert [p.status for p in await _invitations_for(emulator, "flaky@fabrikam.com")] == [503, 201]


async def test_duplicate_messages_never_invite_twice(
    client: httpx.AsyncClient, emulator: GraphEmulator, host: dict[str, Any]
) -> None:
    """Extra copies of a message, delivered concurrently and after the fact, invite exactly once."""
    emulator.config.latency_ms = 300  # keep the first attempt in flight while the copies arrive
    response = await client.post("/api/signups", json={"email": "dup@fabrikam.com", "displayName": "D"})
    signup_id = response.json()["id"]
    env = host["env"]
    queue = QueueClient.from_connection_string(
        expand_connection_string(env["AzureWebJobsStorage"]), env["SIGNUP_QUEUE"]
    )
    async with queue:
        for _ in range(3):
            await queue.send_message(base64.b64encode(json.dumps({"id": signup_id}).encode()).decode())
        final = await _until(client, response.json()["statusUrl"], {"invited", "failed"}, within=40)
        assert final["status"] == "invited"
        for _ in range(3):
            await queue.send_message(base64.b64encode(json.dumps({"id": signup_id}).encode()).decode())
        # Copies that met the live lease were re-enqueued for its end; all drain without poison.
        for _ in range(300):
            props = await queue.get_queue_properties()
            if props.approximate_message_count == 0:
                break
            await asyncio.sleep(0.2)
    assert props.approximate_message_count == 0
    poison = QueueClient.from_connection_string(
        expand_connection_string(env["AzureWebJobsStorage"]), f"{env['SIGNUP_QUEUE']}-poison"
    )
    async with poison:
        assert await poison.peek_messages(max_messages=32) == []
    assert len([p for p in await _invitations_for(emulator, "dup@fabrikam.com") if p.status == 201]) == 1


async def test_the_policy_decides_at_intake(
    client: httpx.AsyncClient, emulator: GraphEmulator, host: dict[str, Any]
) -> None:
    """The test policy: a blocked domain gets 403 forbidden; an unknown one waits pending_approval, uninvited."""
    refused = await client.post("/api/signups", json={"email": "eve@blocked.example.com", "displayName": "Eve"})
    assert refused.status_code == 403
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert problem_of(refused.json())["type"] == "/problems/forbidden"

    waiting = await client.post("/api/signups", json={"email": "pat@contoso.com", "displayName": "Pat"})
    assert waiting.status_code == 202 and waiting.json()["status"] == "pending_approval"
    await _after_the_workers_next_poll(client, host)  # a worker that wrongly picked it up has done so
    view = (await client.get(waiting.headers["Location"])).json()
    assert view["status"] == "pending_approval" and view["error"] is None
    assert await _invitations_for(emulator, "pat@contoso.com") == []


async def test_host_log_never_holds_an_email_address(
    client: httpx.AsyncClient, emulator: GraphEmulator, host: dict[str, Any]
) -> None:
    """Logs carry ids and domains, never the raw address: invited, failed, refused and pending, sent here."""
    emulator.faults.append(Fault(kind="403", address="log.blocked@fabrikam.com"))
    sent = {
        "Log.Guest@fabrikam.com": {"invited"},
        "log.alex@fäbrikam.com": {"invited"},
        "log.blocked@fabrikam.com": {"failed"},
        "log.pat@contoso.com": {"pending_approval"},
    }
    for address, final in sent.items():
        response = await client.post("/api/signups", json={"email": address, "displayName": "Log"})
        assert response.status_code == 202, response.text
        assert (await _until(client, response.headers["Location"], {"invited", "failed", "pending_approval"}))[
            "status"
        ] in final
    refused = await client.post("/api/signups", json={"email": "log.eve@blocked.example.com", "displayName": "E"})
    assert refused.status_code == 403
    log = await asyncio.to_thread(Path(host["service"].log_path).read_text)
    assert "intake.accepted" in log and "fabrikam.com" in log  # the host logged these requests, by domain
    for address in (*sent, "log.alex@xn--fbrikam-5wa.com", "log.eve@blocked.example.com"):
        assert address.lower() not in log.lower()
        assert address.split("@")[0].lower() not in log.lower()


async def test_the_anonymous_view_reveals_nothing_about_the_directory(
    client: httpx.AsyncClient, emulator: GraphEmulator
) -> None:
    """Issue 18: a member's private address (here its otherMails, as a password-reset address is kept) and a fresh
    address give anonymous answers of the same shape, both ending as a completed request; the admin view still
    says ExistingMember. Nothing tells an anonymous caller who is in the directory."""
    emulator.add_user(mail="kim@contoso.com", otherMails=["kim.home@fabrikam.com"], userPrincipalName="kim@contoso.com")
    answers, views = [], []
    for address in ("kim.home@fabrikam.com", "fresh.person@fabrikam.com"):
        accepted = await client.post("/api/signups", json={"email": address, "displayName": "K"})
        assert accepted.status_code == 202
        answers.append(accepted.json())
        views.append(await _until(client, accepted.json()["statusUrl"], {"invited", "failed"}))
    assert [a["status"] for a in answers] == ["queued", "queued"]
    assert [(v["status"], v["error"], sorted(v)) for v in views] == [("invited", None, sorted(views[1]))] * 2
    key = {"x-functions-key": FUNCTION_KEY}
    detail = (await client.get(f"/api/manage/signups/{answers[0]['id']}", headers=key)).json()
    assert (detail["status"], detail["error"]["code"]) == ("failed", "ExistingMember")


async def test_a_members_address_gets_one_account_mail_and_the_same_answers(
    client: httpx.AsyncClient, emulator: GraphEmulator
) -> None:
    """Issue 18: with MAIL_SENDER set, a member's address gets one short "you already have an account" mail, in the
    page's language, pointing at the sign-in page, with nothing the requester typed. At most once: the answer to the
    send is lost (Graph sent it; the step ends unknown, never resent), and a repeat sign-up in the window sends
    none. The anonymous answers keep the shape of a fresh address's completed request."""
    emulator.add_user(mail="lee@contoso.com", otherMails=["lee.home@fabrikam.com"], userPrincipalName="lee@contoso.com")
    member, fresh = "lee.home@fabrikam.com", "lee.fresh@fabrikam.com"
    emulator.faults.append(Fault("acted504", operation="send-mail", times=1))
    answers, views = [], []
    for address in (member, member, fresh):
        body = {"email": address, "displayName": "Lee <b>Typed</b>", "language": "de"}
        accepted = await client.post("/api/signups", json=body)
        assert accepted.status_code == 202, accepted.text
        answers.append(accepted.json())
        views.append(await _until(client, accepted.json()["statusUrl"], {"invited", "failed"}))
    assert [a["status"] for a in answers] == ["queued"] * 3
    assert [sorted(a) for a in answers] == [sorted(answers[2])] * 3
    assert [(v["status"], v["error"], sorted(v)) for v in views] == [("invited", None, sorted(views[2]))] * 3

    [mail] = [m for m in emulator.sent_mails if member in m["to"]]
    assert mail["to"] == [member] and mail["sender"] == "portal@contoso.com"
    assert mail["subject"] == "Sie haben bereits ein Konto bei the organisation"
    assert 'href="https://myapps.microsoft.com"' in mail["body"] and "Typed" not in mail["body"]
    assert not [m for m in emulator.sent_mails if fresh in m["to"]]  # Microsoft mails the fresh one, not the portal
    key = {"x-functions-key": FUNCTION_KEY}
    first, repeat = [(await client.get(f"/api/manage/signups/{a['id']}", headers=key)).json() for a in answers[:2]]
    assert (first["error"]["code"], first["mail"]) == ("ExistingMember", {"state": "unknown"})  # answer lost
    assert (repeat["error"]["code"], repeat["mail"]) == ("ExistingMember", None)  # the window's one mail went
