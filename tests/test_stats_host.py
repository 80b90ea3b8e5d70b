"""The overview, the list and bulk decisions through the local host (a process), on Azurite and the emulator;
and ``signup-admin status`` reading the same aggregates."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph_emulator.server import GraphEmulator
from tests.conftest import FUNCTION_KEY, host_env, problem_of, running_host

pytestmark = pytest.mark.e2e

REVIEW_POLICY = str(Path(__file__).resolve().parent / "policies" / "review.json")
KEY = {"x-functions-key": FUNCTION_KEY}
HERE = Path(__file__).resolve().parent  # no local.settings.json there: the environment is the configuration


@pytest.fixture(scope="module")
async def host(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    env = host_env(azurite, emulator_server[1], SIGNUP_POLICY=REVIEW_POLICY)
    async with running_host(env, tmp_path_factory.mktemp("stats")) as (_, url):
        yield url, env


@pytest.fixture
async def client(host: tuple[str, dict[str, str]], emulator: GraphEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host[0], timeout=15) as http:
        yield http


async def _submit(client: httpx.AsyncClient, email: str) -> str:
    response = await client.post("/api/signups", json={"email": email, "displayName": "Guest"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _listed(client: httpx.AsyncClient, params: dict[str, str], want: set[str], within: float = 30) -> list[Any]:
    """Poll the list until it holds ``want`` (the worker admits sign-ups behind the queue)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await client.get("/api/manage/signups", params=params, headers=KEY)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        if want <= {i["id"] for i in items}:
            return list(items)
        assert asyncio.get_running_loop().time() < deadline, f"not listed: {want - {i['id'] for i in items}}"
        await asyncio.sleep(0.3)


async def test_review_list_bulk_decide_and_overview(
    client: httpx.AsyncClient, host: tuple[str, dict[str, str]]
) -> None:
    ids = [await _submit(client, f"bulk{n}@northwind.com") for n in range(4)]
    other = await _submit(client, "Solo@Contoso-Partner.com")
    items = await _listed(client, {"status": "pending_approval", "domain": "northwind.com"}, set(ids))
    assert {i["id"] for i in items} == set(ids) and all(i["email"].startswith("bulk") for i in items)
    found = await _listed(client, {"q": "solo@contoso-partner.com"}, {other})
    assert [i["id"] for i in found] == [other]
    assert (await client.get("/api/manage/signups", params={"q": "nobody@x.com"}, headers=KEY)).json()["items"] == []

    # Bulk: approve two (and a repeat of one, and an unknown id), then deny the rest with a reason.
    unknown = "202601010000AAAAAAAAAAAAAAAAAAAAAA"
    approved = await client.post(
        "/api/manage/decisions", json={"ids": [ids[0], ids[1], unknown], "decision": "approve"}, headers=KEY
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["results"] == [
        {"id": ids[0], "result": "approved"},
        {"id": ids[1], "result": "approved"},
        {"id": unknown, "result": "not_found"},
    ]
    denied = await client.post(
        "/api/manage/decisions",
        json={"ids": [ids[1], ids[2], ids[3], ids[0]], "decision": "deny", "reason": "not a partner"},
        headers=KEY,
    )
    results = {r["id"]: r["result"] for r in denied.json()["results"]}
    assert results == {ids[1]: "conflict", ids[2]: "denied", ids[3]: "denied", ids[0]: "conflict"}
    again = await client.post(
        "/api/manage/decisions", json={"ids": [ids[2]], "decision": "deny", "reason": "again"}, headers=KEY
    )
    assert again.json()["results"] == [{"id": ids[2], "result": "already_decided"}]

    # The overview counts them (the approved ones go on to be invited by the worker).
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        response = await client.get("/api/manage/stats", params={"days": "7"}, headers=KEY)
        assert response.status_code == 200, response.text
        stats = response.json()
        today = stats["days"][-1]["counts"]
        if today.get("invited") == 2 and today.get("denied") == 2:
            break
        assert asyncio.get_running_loop().time() < deadline, stats
        await asyncio.sleep(0.3)
    assert len(stats["days"]) == 7 and today.get("pending_approval") == 1
    assert stats["attention"]["pendingReview"] == 1 and stats["timeToInvite"]["count"] == 2
    assert {"limit", "windowSeconds", "used", "fraction"} == set(stats["budget"])

    # The console shows the same figures from the same aggregates.
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "signup-admin"),
        "status",
        "--days",
        "7",
        env={**os.environ, **host[1]},
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "denied 2" in text and "invited 2" in text and "pending_approval 1" in text
    assert "Needs attention: 1 pending review, 0 in doubt, 0 conversions waiting for a rerun" in text
    assert "@" not in text  # no address on the console


async def test_bad_parameters_and_bodies_are_named(client: httpx.AsyncClient) -> None:
    bad = await client.get(
        "/api/manage/signups", params={"status": "x", "from": "2026-1-1", "sort": "up", "pageSize": "500"}, headers=KEY
    )
    assert bad.status_code == 400 and set(problem_of(bad.json())["errors"]) == {"status", "from", "sort", "pageSize"}
    token = await client.get("/api/manage/signups", params={"continuationToken": "nonsense"}, headers=KEY)
    assert token.status_code == 400 and "continuationToken" in problem_of(token.json())["errors"]
    days = await client.get("/api/manage/stats", params={"days": "91"}, headers=KEY)
    assert days.status_code == 400 and "days" in problem_of(days.json())["errors"]
    no_reason = await client.post("/api/manage/decisions", json={"ids": ["a"], "decision": "deny"}, headers=KEY)
    assert no_reason.status_code == 400 and "reason" in problem_of(no_reason.json())["errors"]
    too_many = await client.post(
        "/api/manage/decisions", json={"ids": [str(n) for n in range(101)], "decision": "maybe"}, headers=KEY
    )
    assert set(problem_of(too_many.json())["errors"]) == {"ids", "decision"}
    form = await client.post("/api/manage/decisions", data={"ids": "a", "decision": "approve"}, headers=KEY)
    assert form.status_code == 415
    cross = await client.post(
        "/api/manage/decisions",
        json={"ids": ["a"], "decision": "approve"},
        headers={**KEY, "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and problem_of(cross.json())["type"].endswith("/problems/cross-site")
    assert (await client.get("/api/manage/stats")).status_code == 401
