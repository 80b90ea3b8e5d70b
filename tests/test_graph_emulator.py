"""The Graph emulator's fidelity over HTTP: throttling headers and limits, faults that act, mail counts, CLI."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from graph_emulator.__main__ import parse_fault
from graph_emulator.server import APP_ID, TENANT_ID, Fault, GraphEmulator, address_key
from tests.conftest import IDENTITY_HEADER

REDIRECT = "https://myapps.microsoft.com"


@pytest.fixture
async def graph(graph_base: str, emulator: GraphEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client with a token from the emulator's managed-identity endpoint."""
    async with httpx.AsyncClient(base_url=graph_base) as http:
        token = await http.get(
            "/msi/token",
            params={"resource": "https://graph.microsoft.com", "api-version": "2019-08-01"},
            headers={"X-IDENTITY-HEADER": IDENTITY_HEADER},
        )
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield http


def _invitation(email: str, send: bool = True) -> dict[str, object]:
    return {"invitedUserEmailAddress": email, "inviteRedirectUrl": REDIRECT, "sendInvitationMessage": send}


async def test_limit_fraction_is_reported_from_80_percent_as_graph_does(
    graph: httpx.AsyncClient, emulator: GraphEmulator
) -> None:
    """x-ms-throttle-limit-percentage is a fraction: absent below 0.8, then 0.80, 1.00, and above 1 on the 429."""
    emulator.config.write_budget, emulator.config.write_window_seconds = 5, 100.0
    emulator.reset()
    answers = [await graph.post("/v1.0/invitations", json=_invitation(f"u{i}@fabrikam.com")) for i in range(6)]
    assert [a.status_code for a in answers] == [201] * 5 + [429]
    reported = [a.headers.get("x-ms-throttle-limit-percentage") for a in answers]
    assert reported == [None, None, None, "0.80", "1.00", "1.20"]
    throttled = answers[-1]
    assert throttled.headers["x-ms-throttle-scope"] == f"Tenant_Application/WriteLimitExceeded/{APP_ID}/{TENANT_ID}"
    assert throttled.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert throttled.headers["Retry-After"] == "20"  # one write per 20 s, one token owed
    assert throttled.json()["error"]["code"] == "TooManyRequests"


async def test_the_invitation_manager_limit_is_a_second_bucket(
    graph: httpx.AsyncClient, emulator: GraphEmulator
) -> None:
    """Requests on /invitations meet the tenant's invitation limit, named in the 429; other writes do not."""
    emulator.config.invitation_budget, emulator.config.invitation_window_seconds = 3, 5.0
    emulator.reset()
    answers = [await graph.post("/v1.0/invitations", json=_invitation(f"u{i}@fabrikam.com")) for i in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    throttled = answers[-1]
    assert throttled.headers["x-ms-throttle-scope"] == f"Tenant/InvitationManager/{APP_ID}/{TENANT_ID}"
    assert throttled.headers["x-ms-throttle-information"] == "InvitationLimitExceeded"
    assert int(throttled.headers["Retry-After"]) >= 1
    assert answers[2].headers["x-ms-throttle-limit-percentage"] == "1.00"  # the busier limit is reported
    user_id = answers[0].json()["invitedUser"]["id"]
    patched = await graph.patch(f"/v1.0/users/{user_id}", json={"displayName": "U0"})
    assert patched.status_code == 204
    stats = (await graph.get("/_emulator/stats")).json()
    assert (stats["throttled"], stats["throttled_invitation_limit"], stats["invitations"]) == (1, 1, 3)


async def test_the_invitation_limit_is_configurable_at_run_time(
    graph: httpx.AsyncClient, emulator: GraphEmulator
) -> None:
    """PUT /_emulator/config resizes both buckets."""
    config = await graph.put("/_emulator/config", json={"invitation_budget": 1, "invitation_window_seconds": 60})
    assert config.json()["invitation_budget"] == 1
    first = await graph.post("/v1.0/invitations", json=_invitation("a@fabrikam.com"))
    second = await graph.post("/v1.0/invitations", json=_invitation("b@fabrikam.com"))
    assert (first.status_code, second.status_code) == (201, 429)
    assert second.headers["Retry-After"] == "60"


@pytest.mark.parametrize("strict", [False, True], ids=["debt", "strict"])
async def test_a_strict_bucket_never_goes_below_zero(
    graph: httpx.AsyncClient, emulator: GraphEmulator, strict: bool
) -> None:
    """Strict mode (set through /_emulator/config) is a plain token bucket: throttled calls cost nothing, so
    one token after a burst of 429s is one write; the default bucket makes the hammering client pay them off."""
    config = {"write_budget": 2, "write_window_seconds": 1.0, "strict_buckets": strict}
    assert (await graph.put("/_emulator/config", json=config)).json()["strict_buckets"] is strict
    answers = [await graph.post("/v1.0/invitations", json=_invitation(f"s{i}@fabrikam.com")) for i in range(6)]
    assert [a.status_code for a in answers[:3]] == [201, 201, 429] and {a.status_code for a in answers[3:]} == {429}
    await asyncio.sleep(0.7)  # 1.4 tokens refilled: enough for one write only when nothing is owed
    after = await graph.post("/v1.0/invitations", json=_invitation("after@fabrikam.com"))
    assert after.status_code == (201 if strict else 429)


async def test_strict_mode_takes_only_true_or_false(graph: httpx.AsyncClient, emulator: GraphEmulator) -> None:
    """A string is not quietly read as true."""
    answer = await graph.put("/_emulator/config", json={"strict_buckets": "false"})
    assert answer.status_code == 400 and emulator.config.strict_buckets is False


async def test_mails_are_counted_per_address_and_reported_by_key(
    graph: httpx.AsyncClient, emulator: GraphEmulator
) -> None:
    """Each invitation Graph performed with sendInvitationMessage is one mail; refused ones send none."""
    emulator.faults.append(Fault(kind="403", address="refused@fabrikam.com"))
    emulator.faults.append(Fault(kind="acted504", address="lost@fabrikam.com"))
    for body in (
        _invitation("sam@fabrikam.com"),
        _invitation("sam@fabrikam.com"),
        _invitation("quiet@fabrikam.com", send=False),
        _invitation("refused@fabrikam.com"),
        _invitation("lost@fabrikam.com"),
    ):
        await graph.post("/v1.0/invitations", json=body)
    assert emulator.mails == {"sam@fabrikam.com": 2, "lost@fabrikam.com": 1}
    assert [i["mailed"] for i in emulator.invitations] == [True, True, False, True]
    response = await graph.get("/_emulator/stats")
    stats = response.json()
    assert (stats["mails"], stats["mails_max_per_address"]) == (3, 2)
    assert stats["mails_per_address"] == {address_key("sam@fabrikam.com"): 2, address_key("lost@fabrikam.com"): 1}
    assert stats["invitations_per_address"][address_key("Sam@Fabrikam.com")] == 2
    assert (stats["invitations_max_per_address"], stats["reinvited_addresses"]) == (2, 1)
    assert "@" not in response.text


@pytest.mark.parametrize("kind", ["acted504", "acteddrop"])
async def test_acted_faults_perform_the_write_then_lose_the_answer(
    graph: httpx.AsyncClient, emulator: GraphEmulator, kind: str
) -> None:
    """acted504 / acteddrop: the invitation and the group add happen, the client gets a 504 or a reset."""
    group = "11111111-2222-4333-8444-555555555555"
    emulator.groups[group] = set()
    emulator.faults.append(Fault(kind=kind, operation="*", times=2))
    body = _invitation("sam@fabrikam.com")
    ref = {"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/"}
    if kind == "acted504":
        answer = await graph.post("/v1.0/invitations", json=body)
        assert answer.status_code == 504
        [user_id] = list(emulator.users)
        added = await graph.post(f"/v1.0/groups/{group}/members/$ref", json={"@odata.id": ref["@odata.id"] + user_id})
        assert added.status_code == 504
    else:
        with pytest.raises(httpx.TransportError):
            await graph.post("/v1.0/invitations", json=body)
        [user_id] = list(emulator.users)
        with pytest.raises(httpx.TransportError):
            await graph.post(f"/v1.0/groups/{group}/members/$ref", json={"@odata.id": ref["@odata.id"] + user_id})
    assert emulator.invitations_per_address() == {"sam@fabrikam.com": 1}
    assert emulator.groups[group] == {user_id}
    writes = [r for r in emulator.requests if r.operation in ("invitation", "group-member-ref")]
    assert [(r.fault, r.acted) for r in writes] == [(kind, True), (kind, True)]


async def test_acted_faults_do_not_act_when_graph_refuses(graph: httpx.AsyncClient, emulator: GraphEmulator) -> None:
    """An acted fault on a request Graph refuses (here: throttled) answers the refusal; nothing happened."""
    emulator.config.write_budget, emulator.config.write_window_seconds = 1, 100.0
    emulator.reset()
    await graph.post("/v1.0/invitations", json=_invitation("a@fabrikam.com"))
    emulator.faults.append(Fault(kind="acted504"))
    answer = await graph.post("/v1.0/invitations", json=_invitation("b@fabrikam.com"))
    assert answer.status_code == 429
    assert not emulator.requests[-1].acted
    assert list(emulator.invitations_per_address()) == ["a@fabrikam.com"]


async def test_bodies_are_validated_before_any_fault(graph: httpx.AsyncClient, emulator: GraphEmulator) -> None:
    """A body that does not conform gets Graph's 400 even when a fault is planned, and is recorded as invalid."""
    emulator.faults.append(Fault(kind="acted504"))
    answer = await graph.post("/v1.0/invitations", json={"invitedUserEmailAddress": "a+b@x.com"})
    assert answer.status_code == 400
    assert emulator.invitations == [] and emulator.stats["invalid"] == 1
    emulator.requests.clear()  # keep the fixture's schema check for the app's own requests


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("acted504", Fault("acted504"), id="kind"),
        pytest.param("acteddrop@sam@fabrikam.com*2", Fault("acteddrop", "sam@fabrikam.com", 2), id="address-times"),
        pytest.param("actedtimeout%0.25", Fault("actedtimeout", rate=0.25), id="rate"),
        pytest.param("list-users:503", Fault("503", operation="list-users"), id="operation"),
        pytest.param("*:504@a@b.com", Fault("504", "a@b.com", operation="*"), id="any-operation"),
    ],
)
def test_cli_fault_forms(text: str, expected: Fault) -> None:
    """--fault accepts every kind, an address, a count, a rate and an operation prefix."""
    assert parse_fault(text) == expected


def test_cli_refuses_unknown_fault_kinds() -> None:
    """An unknown kind is an argument error that lists the kinds."""
    with pytest.raises(argparse.ArgumentTypeError, match="acted504"):
        parse_fault("acted418")
    json.dumps([parse_fault("drop").__dict__])
