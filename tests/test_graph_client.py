"""The real msgraph-sdk client against the Graph emulator over HTTP: bodies, faults, credentials."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError

from devhost.processes import free_port
from graph_emulator import schema
from graph_emulator.server import Fault, GraphEmulator, http_date
from shared.errors import AmbiguousGraphError, GraphError, PermanentGraphError, TransientGraphError, WriteDeferred
from shared.graph.budget import INVITATIONS, WRITES, TableBudgetStore
from shared.graph.client import (
    MsGraphDirectory,
    build_credential,
    build_graph_client,
    build_http_client,
    classify,
    email_filter,
    parse_retry_after,
)
from shared.graph.directory import Invitation, InvitationOptions, MailMessage
from shared.graph.pacing import WritePacer
from shared.services import build_gate
from shared.settings import Settings, load_settings
from shared.storage import build_table_client
from tests.certs import client_bundle

OPTIONS = InvitationOptions(redirect_url="https://myapps.microsoft.com")


@pytest.fixture
async def directory(settings: Settings, emulator: GraphEmulator):  # type: ignore[no-untyped-def]
    credential, http = build_credential(settings), build_http_client(settings)
    pacer = WritePacer(settings.graph_write_budget, settings.graph_write_window_seconds)
    yield MsGraphDirectory(build_graph_client(settings, credential, http), pacer, max_throttle_wait=5.0)
    await http.aclose()
    await credential.close()


def _posts(emulator: GraphEmulator, operation: str = "invitation") -> list[Any]:
    return [r for r in emulator.requests if r.operation == operation]


async def test_invitation_round_trip(directory: MsGraphDirectory, emulator: GraphEmulator) -> None:
    """201 gives the invitation id, the guest's object id, the status and the redeem URL."""
    result = await directory.invite(Invitation("sam@fabrikam.com", "Sam Guest", OPTIONS))
    assert result.status == "PendingAcceptance"
    assert result.redeem_url and result.redeem_url.startswith("https://login.microsoftonline.com/redeem?rd=")
    assert result.request_id
    guest = emulator.users[result.invited_user_id or ""]
    assert guest["userPrincipalName"] == "sam_fabrikam.com#EXT#@contoso.onmicrosoft.com"
    assert guest["userType"] == "Guest"
    [post] = _posts(emulator)
    assert post.body == {
        "invitedUserEmailAddress": "sam@fabrikam.com",
        "inviteRedirectUrl": "https://myapps.microsoft.com",
        "invitedUserDisplayName": "Sam Guest",
        "invitedUserType": "Guest",
        "sendInvitationMessage": True,
    }
    assert post.headers["Authorization"] == "<redacted>"


async def test_reinvite_returns_same_user_with_new_redeem_url(directory: MsGraphDirectory) -> None:
    """Graph's documented behaviour, mirrored: same user, fresh redeem URL."""
    first = await directory.invite(Invitation("sam@fabrikam.com", "Sam", OPTIONS))
    second = await directory.invite(Invitation("sam@fabrikam.com", "Sam", OPTIONS))
    assert first.invited_user_id == second.invited_user_id
    assert first.redeem_url != second.redeem_url


async def test_every_option_is_sent_and_conforms(directory: MsGraphDirectory, emulator: GraphEmulator) -> None:
    """Message info, cc, sponsors, user type, conversion and reset all serialise to schema-valid bodies."""
    sponsor = emulator.add_user(displayName="Owner", mail="owner@contoso.com")
    internal = emulator.add_user(displayName="Adele", mail="adele@fabrikam.com")
    full = InvitationOptions(
        redirect_url="https://myapps.microsoft.com",
        user_type="Guest",
        send_message=True,
        message_body="Welcome to Contoso's partner workspace.",
        cc_address="owner@contoso.com",
        sponsor_ids=(sponsor["id"],),
    )
    await directory.invite(Invitation("kim@fabrikam.com", "Kim", full))
    await directory.invite(
        Invitation(
            "lee@fabrikam.com",
            "Lee",
            InvitationOptions(redirect_url="https://myapps.microsoft.com", message_language="fr-FR"),
        )
    )
    converted = await directory.invite(Invitation("adele@fabrikam.com", None, OPTIONS, invited_user_id=internal["id"]))
    assert converted.invited_user_id == internal["id"]
    await directory.invite(
        Invitation("adele@fabrikam.com", None, OPTIONS, invited_user_id=internal["id"], reset_redemption=True)
    )
    posts = _posts(emulator)
    assert [p.status for p in posts] == [201, 201, 201, 201]
    assert all(p.findings == [] for p in posts), [p.findings for p in posts]
    assert posts[0].body["invitedUserMessageInfo"] == {
        "ccRecipients": [{"emailAddress": {"address": "owner@contoso.com"}}],
        "customizedMessageBody": "Welcome to Contoso's partner workspace.",
    }
    assert [s["id"] for s in posts[0].body["invitedUserSponsors"]] == [sponsor["id"]]
    assert posts[1].body["invitedUserMessageInfo"] == {"messageLanguage": "fr-FR"}
    assert posts[2].body["invitedUser"]["id"] == internal["id"]
    assert posts[3].body["resetRedemption"] is True


@pytest.mark.sends_invalid_graph_bodies
async def test_emulator_responses_conform_to_the_schema(
    directory: MsGraphDirectory, graph_base: str, emulator: GraphEmulator
) -> None:
    """What the emulator answers is a valid invitation response per Microsoft's schema."""
    credential = build_credential(
        load_settings(
            {
                "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                "INVITE_REDIRECT_URL": "https://x.example",
            }
        )
    )
    async with credential:
        token = (await credential.get_token("https://graph.microsoft.com/.default")).token
    async with httpx.AsyncClient(base_url=f"{graph_base}/v1.0", headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.post(
            "/invitations",
            json={
                "invitedUserEmailAddress": "pat@fabrikam.com",
                "inviteRedirectUrl": "https://myapps.microsoft.com",
                "invitedUserMessageInfo": {"ccRecipients": [{"emailAddress": {"address": "o@contoso.com"}}]},
            },
        )
        assert response.status_code == 201
        assert schema.errors("invitation-response", response.json()) == []
        bad = await http.post("/invitations", json={"invitedUserEmailAddress": "a+b@x.com", "inviteRedirectUrl": 5})
        assert bad.status_code == 400
        error = bad.json()["error"]
        assert error["code"] == "BadRequest" and error["innerError"]["request-id"]
        unauth = await http.post("/invitations", json={}, headers={"Authorization": "Bearer forged"})
        assert unauth.status_code == 401


@asynccontextmanager
async def _directory_for(
    settings: Settings, pacer: WritePacer | None = None, **kw: Any
) -> AsyncIterator[MsGraphDirectory]:
    """A directory over its own credential and HTTP client (closed afterwards)."""
    credential, http = build_credential(settings), build_http_client(settings)
    try:
        yield MsGraphDirectory(build_graph_client(settings, credential, http), pacer or WritePacer(10, 1), **kw)
    finally:
        await http.aclose()
        await credential.close()


SAM = Invitation("sam@fabrikam.com", "Sam", OPTIONS)
SAM_BODY = {
    "invitedUserEmailAddress": "sam@fabrikam.com",
    "inviteRedirectUrl": "https://myapps.microsoft.com",
    "invitedUserDisplayName": "Sam",
    "invitedUserType": "Guest",
    "sendInvitationMessage": True,
}


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        pytest.param("400", "BadRequest", id="400"),
        pytest.param("403", "Authorization_RequestDenied", id="403"),
        pytest.param("404", "Request_ResourceNotFound", id="404"),
        pytest.param("409", "Conflict", id="409"),
        pytest.param("412", "PreconditionFailed", id="412"),
    ],
)
async def test_permanent_faults(directory: MsGraphDirectory, emulator: GraphEmulator, kind: str, code: str) -> None:
    """4xx (other than 401/408/429) are permanent, carrying Graph's code and request id."""
    emulator.faults.append(Fault(kind=kind, address="sam@fabrikam.com"))
    with pytest.raises(PermanentGraphError) as info:
        await directory.invite(SAM)
    assert info.value.code == code
    assert info.value.status == int(kind)
    assert info.value.request_id
    assert len(_posts(emulator)) == 1


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        pytest.param("401", "InvalidAuthenticationToken", id="401"),
        pytest.param("408", "RequestTimeout", id="408"),
    ],
)
async def test_statuses_where_graph_did_not_act_are_transient_on_a_write(
    directory: MsGraphDirectory, emulator: GraphEmulator, kind: str, code: str
) -> None:
    """401 and 408 on a POST are transient (Graph did not act), not ambiguous, and not posted again."""
    emulator.faults.append(Fault(kind=kind))
    with pytest.raises(TransientGraphError) as info:
        await directory.invite(SAM)
    assert type(info.value) is TransientGraphError
    assert (info.value.code, info.value.status) == (code, int(kind))
    assert len(_posts(emulator)) == 1


@pytest.mark.parametrize("kind", ["500", "502", "503", "504"])
async def test_server_errors_on_a_write_are_ambiguous_and_never_reposted(
    directory: MsGraphDirectory, emulator: GraphEmulator, kind: str
) -> None:
    """5xx on a POST may follow a completed write: AmbiguousGraphError, and the SDK does not POST again."""
    emulator.faults.append(Fault(kind=kind))
    with pytest.raises(AmbiguousGraphError) as info:
        await directory.invite(SAM)
    assert info.value.status == int(kind)
    assert info.value.request_id
    assert len(_posts(emulator)) == 1
    if kind == "503":
        assert info.value.retry_after == 2.0


@pytest.mark.parametrize(
    ("operation", "kind"),
    [
        pytest.param("list-users", "500", id="lookup-500"),
        pytest.param("list-users", "503", id="lookup-503"),
        pytest.param("get-user", "502", id="get-user-502"),
        pytest.param("get-user", "504", id="get-user-504"),
    ],
)
async def test_server_errors_on_a_read_are_transient(
    directory: MsGraphDirectory, emulator: GraphEmulator, operation: str, kind: str
) -> None:
    """A read changes nothing, so a 5xx on it is plainly transient."""
    emulator.faults.append(Fault(kind=kind, operation=operation))
    with pytest.raises(TransientGraphError) as info:
        if operation == "list-users":
            await directory.find_users_by_email("sam@fabrikam.com")
        else:
            await directory.get_user("00000000-0000-4000-8000-000000000001")
    assert type(info.value) is TransientGraphError
    assert info.value.status == int(kind)


async def test_a_504_after_graph_acted_is_ambiguous_and_a_read_finds_the_guest(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    """acted504: Graph created the invitation (and sent its mail), then answered 504; the lookup finds the guest."""
    emulator.faults.append(Fault(kind="acted504", times=1))
    with pytest.raises(AmbiguousGraphError) as info:
        await directory.invite(SAM)
    assert (info.value.status, info.value.code) == (504, "GatewayTimeout")
    assert emulator.invitations_per_address() == {"sam@fabrikam.com": 1}
    assert emulator.mails == {"sam@fabrikam.com": 1}
    [guest] = await directory.find_users_by_email("sam@fabrikam.com")
    assert guest.user_type == "Guest" and guest.external_user_state == "PendingAcceptance"


@pytest.mark.parametrize(
    ("kind", "acted"),
    [pytest.param("drop", False, id="drop"), pytest.param("acteddrop", True, id="acteddrop")],
)
async def test_a_dropped_connection_on_a_write_is_ambiguous(
    directory: MsGraphDirectory, emulator: GraphEmulator, kind: str, acted: bool
) -> None:
    """A connection closed without an answer is ambiguous whether or not Graph acted: the client cannot tell."""
    emulator.faults.append(Fault(kind=kind))
    with pytest.raises(AmbiguousGraphError) as info:
        await directory.invite(SAM)
    assert info.value.code == "ConnectionFailed"
    assert len(emulator.invitations) == (1 if acted else 0)
    assert len(_posts(emulator)) == 1


@pytest.mark.parametrize(
    ("kind", "acted"),
    [pytest.param("timeout", False, id="timeout"), pytest.param("actedtimeout", True, id="actedtimeout")],
)
async def test_a_timeout_on_a_write_is_ambiguous(
    app_env: dict[str, str], emulator: GraphEmulator, kind: str, acted: bool
) -> None:
    """No answer within GRAPH_TIMEOUT_SECONDS after the POST went out: ambiguous Timeout, acted or not."""
    settings = load_settings({**app_env, "GRAPH_TIMEOUT_SECONDS": "0.5"})
    emulator.config.timeout_fault_seconds = 3
    emulator.faults.append(Fault(kind=kind))
    async with _directory_for(settings) as directory:
        with pytest.raises(AmbiguousGraphError) as info:
            await directory.invite(SAM)
    assert info.value.code == "Timeout"
    assert len(emulator.invitations) == (1 if acted else 0)


@pytest.mark.parametrize("kind", ["timeout", "drop"])
async def test_a_lost_answer_on_a_read_is_transient(
    app_env: dict[str, str], emulator: GraphEmulator, kind: str
) -> None:
    """The same lost answers on a read are transient: Timeout and ConnectionFailed."""
    settings = load_settings({**app_env, "GRAPH_TIMEOUT_SECONDS": "0.5"})
    emulator.config.timeout_fault_seconds = 3
    emulator.faults.append(Fault(kind=kind, operation="list-users"))
    async with _directory_for(settings) as directory:
        with pytest.raises(TransientGraphError) as info:
            await directory.find_users_by_email("sam@fabrikam.com")
    assert type(info.value) is TransientGraphError
    assert info.value.code == {"timeout": "Timeout", "drop": "ConnectionFailed"}[kind]


async def test_no_connection_is_transient_even_for_a_write(app_env: dict[str, str], emulator: GraphEmulator) -> None:
    """Connection refused: nothing was sent, so a POST fails as transient ConnectionFailed, not ambiguous."""
    closed = free_port()
    settings = load_settings({**app_env, "GRAPH_BASE_URL": f"http://127.0.0.1:{closed}/v1.0"})
    async with _directory_for(settings) as directory:
        with pytest.raises(TransientGraphError) as info:
            await directory.invite(SAM)
    assert type(info.value) is TransientGraphError
    assert info.value.code == "ConnectionFailed"


async def test_no_token_is_transient_and_nothing_is_sent(settings: Settings, emulator: GraphEmulator) -> None:
    """The identity endpoint refuses: AuthenticationFailed (transient), and Graph never sees the POST."""
    emulator.config.identity_header = "not-what-the-app-sends"
    async with _directory_for(settings) as directory:
        with pytest.raises(TransientGraphError) as info:
            await directory.invite(SAM)
    assert info.value.code == "AuthenticationFailed"
    assert _posts(emulator) == []


_REQUEST = httpx.Request("POST", "https://graph.microsoft.com/v1.0/invitations")


@pytest.mark.parametrize(
    ("exc", "write", "expected", "code"),
    [
        pytest.param(httpx.ConnectError("refused"), True, TransientGraphError, "ConnectionFailed", id="connect"),
        pytest.param(httpx.ConnectTimeout("slow"), True, TransientGraphError, "Timeout", id="connect-timeout"),
        pytest.param(httpx.PoolTimeout("busy"), True, TransientGraphError, "Timeout", id="pool-timeout"),
        pytest.param(httpx.ReadTimeout("slow"), True, AmbiguousGraphError, "Timeout", id="read-timeout-write"),
        pytest.param(httpx.ReadTimeout("slow"), False, TransientGraphError, "Timeout", id="read-timeout-read"),
        pytest.param(httpx.WriteTimeout("slow"), True, AmbiguousGraphError, "Timeout", id="write-timeout-write"),
        pytest.param(httpx.ReadError("reset"), True, AmbiguousGraphError, "ConnectionFailed", id="read-error-write"),
        pytest.param(httpx.ReadError("reset"), False, TransientGraphError, "ConnectionFailed", id="read-error-read"),
        pytest.param(
            httpx.RemoteProtocolError("gone"), True, AmbiguousGraphError, "ConnectionFailed", id="protocol-write"
        ),
        pytest.param(
            ClientAuthenticationError("no token"), True, TransientGraphError, "AuthenticationFailed", id="no-token"
        ),
    ],
)
def test_transport_failures_by_whether_anything_was_sent(
    exc: Exception, write: bool, expected: type[GraphError], code: str
) -> None:
    """Before sending: transient. After sending a write: ambiguous. After sending a read: transient."""
    error = classify(exc, write=write)
    assert type(error) is expected
    assert error.code == code


async def test_429_is_retried_after_retry_after(directory: MsGraphDirectory, emulator: GraphEmulator) -> None:
    """A throttled POST was not acted on, so it is sent again once Retry-After has passed."""
    emulator.faults.append(Fault(kind="429", times=1, retry_after=0.5))
    started = time.monotonic()
    result = await directory.invite(Invitation("sam@fabrikam.com", "Sam", OPTIONS))
    assert result.invited_user_id
    assert [p.status for p in _posts(emulator)] == [429, 201]
    assert time.monotonic() - started >= 0.5  # the fault's Retry-After


async def test_429_past_the_wait_limit_is_transient(settings: Settings, emulator: GraphEmulator) -> None:
    """Throttling that outlasts max_throttle_wait goes back to the queue as transient."""
    emulator.faults.append(Fault(kind="429", times=10, retry_after=0.5))
    async with _directory_for(settings, max_throttle_wait=1.25) as directory:
        with pytest.raises(TransientGraphError) as info:
            await directory.invite(Invitation("sam@fabrikam.com", "Sam", OPTIONS))
    assert info.value.status == 429
    assert len(_posts(emulator)) == 3  # 1.25 s budget, 0.5 s each: two retries


async def test_a_slot_beyond_max_pacing_wait_defers_without_sending(
    settings: Settings, emulator: GraphEmulator
) -> None:
    """After a 429 whose Retry-After exceeds max_pacing_wait, the next write is WriteDeferred and never sent."""
    emulator.faults.append(Fault(kind="429", times=1))  # Retry-After: 2
    async with _directory_for(settings, max_pacing_wait=1.0) as directory:
        with pytest.raises(WriteDeferred) as info:
            await directory.invite(SAM)
        assert info.value.retry_after is not None and 1.0 < info.value.retry_after <= 2.2
        assert [p.status for p in _posts(emulator)] == [429]
        with pytest.raises(WriteDeferred):
            await directory.invite(Invitation("kim@fabrikam.com", "Kim", OPTIONS))
    assert [p.status for p in _posts(emulator)] == [429]  # still nothing more sent


async def test_graphs_limit_fraction_empties_the_pacer(settings: Settings, emulator: GraphEmulator) -> None:
    """x-ms-throttle-limit-percentage is read as Graph's fraction: at 1.0 the pacer holds no token."""
    emulator.config.write_budget, emulator.config.write_window_seconds = 5, 100.0
    emulator.reset()
    now = [time.monotonic()]
    pacer = WritePacer(1000, 1.0, headroom=0.0, clock=lambda: now[0])
    now[0] += 10.0  # a full local bucket: only Graph's header can hold the next write back
    async with _directory_for(settings, pacer) as directory:
        for i in range(4):
            await directory.invite(Invitation(f"u{i}@fabrikam.com", None, OPTIONS))
        assert pacer.estimate() == 0.0  # 0.8 reported: 20 % of the local budget is still plenty
        await directory.invite(Invitation("u4@fabrikam.com", None, OPTIONS))
    assert pacer.estimate() == pytest.approx(pacer.interval)  # 1.00 reported: nothing left
    assert [p.status for p in _posts(emulator)] == [201] * 5


async def test_lookup_by_email_finds_every_property(directory: MsGraphDirectory, emulator: GraphEmulator) -> None:
    """The documented pre-check finds users by mail, otherMails, UPN and proxyAddresses, quotes escaped."""
    a = emulator.add_user(displayName="A", mail="o'neil@fabrikam.com")
    b = emulator.add_user(displayName="B", mail="b@contoso.com", otherMails=["kim@fabrikam.com"])
    c = emulator.add_user(displayName="C", mail="c@contoso.com", proxyAddresses=["smtp:lee@fabrikam.com"])
    d = emulator.add_user(displayName="D", mail=None, userPrincipalName="dee@fabrikam.com")
    assert [u.id for u in await directory.find_users_by_email("o'neil@fabrikam.com")] == [a["id"]]
    assert [u.id for u in await directory.find_users_by_email("kim@fabrikam.com")] == [b["id"]]
    assert [u.id for u in await directory.find_users_by_email("lee@fabrikam.com")] == [c["id"]]
    assert [u.id for u in await directory.find_users_by_email("dee@fabrikam.com")] == [d["id"]]
    assert await directory.find_users_by_email("nobody@fabrikam.com") == []
    lookups = [r for r in emulator.requests if r.operation == "list-users"]
    headers = [{k.lower(): v for k, v in r.headers.items()} for r in lookups]
    assert all(r.status == 200 for r in lookups)
    assert all(h.get("consistencylevel") == "eventual" for h in headers)
    assert "o''neil" in lookups[0].query["$filter"]


async def test_get_user_and_group_membership(directory: MsGraphDirectory, emulator: GraphEmulator) -> None:
    """Read a user (None when unknown) and add to a group twice without error."""
    user = emulator.add_user(displayName="A", mail="a@fabrikam.com", onPremisesUserPrincipalName="a@corp.local")
    found = await directory.get_user(user["id"])
    assert found is not None and found.on_premises_user_principal_name == "a@corp.local"
    assert await directory.get_user("00000000-0000-4000-8000-000000000000") is None
    group = "11111111-2222-4333-8444-555555555555"
    emulator.groups[group] = set()
    await directory.add_group_member(group, user["id"])
    await directory.add_group_member(group, user["id"])  # already a member: still fine
    assert emulator.groups[group] == {user["id"]}
    refs = [r for r in emulator.requests if r.operation == "group-member-ref"]
    assert refs and all(r.findings == [] for r in refs)
    with pytest.raises(PermanentGraphError):
        await directory.add_group_member("99999999-2222-4333-8444-555555555555", user["id"])


async def test_backlog_drains_without_429_once_paced(app_env: dict[str, str], emulator: GraphEmulator) -> None:
    """With the pacer sized to the emulator's budget, 60 concurrent invitations meet no 429."""
    emulator.config.write_budget, emulator.config.write_window_seconds = 20, 1.0
    emulator.bucket = type(emulator.bucket)(20, 1.0)
    settings = load_settings({**app_env, "GRAPH_WRITE_BUDGET": "20", "GRAPH_WRITE_WINDOW_SECONDS": "1"})
    credential, http = build_credential(settings), build_http_client(settings)
    pacer = WritePacer(settings.graph_write_budget, settings.graph_write_window_seconds)
    directory = MsGraphDirectory(build_graph_client(settings, credential, http), pacer)
    try:
        await asyncio.gather(*(directory.invite(Invitation(f"u{i}@fabrikam.com", None, OPTIONS)) for i in range(60)))
    finally:
        await http.aclose()
        await credential.close()
    statuses = [p.status for p in _posts(emulator)]
    assert statuses.count(201) == 60
    assert 429 not in statuses


def test_retry_after_forms() -> None:
    """Retry-After may be seconds or an HTTP date."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert 8 <= (parse_retry_after(http_date(10)) or 0) <= 10


def test_classify_refuses_foreign_errors() -> None:
    """Only Graph-call failures are classified; anything else is a bug to surface."""
    with pytest.raises(TypeError):
        classify(ValueError("x"), write=False)


def test_filter_covers_every_address_property() -> None:
    """The pre-check filter asks about mail, UPN, otherMails and proxyAddresses."""
    text = email_filter("a@b.com")
    for part in (
        "mail eq 'a@b.com'",
        "userPrincipalName eq",
        "otherMails/any",
        "proxyAddresses/any(p:p eq 'smtp:a@b.com')",
    ):
        assert part in text


async def test_managed_identity_token_comes_from_the_identity_endpoint(
    settings: Settings, emulator: GraphEmulator
) -> None:
    """azure-identity's ManagedIdentityCredential, unmodified, gets its token from IDENTITY_ENDPOINT."""
    credential = build_credential(settings)
    try:
        token = await credential.get_token(settings.graph_scope)
    finally:
        await credential.close()
    assert type(credential).__name__ == "ManagedIdentityCredential"
    assert token.token in emulator.tokens
    assert emulator.tokens[token.token]["resource"] == "https://graph.microsoft.com"


@pytest.mark.parametrize(
    ("extra", "kind", "cls"),
    [
        (
            {"AZURE_TENANT_ID": "t1", "AZURE_CLIENT_ID": "c1", "AZURE_CLIENT_SECRET": "s"},
            "client_secret",
            "ClientSecretCredential",
        ),
        (
            {"AZURE_TENANT_ID": "t1", "AZURE_CLIENT_ID": "c1", "AZURE_CLIENT_CERTIFICATE_PATH": "/nonexistent.pem"},
            "certificate",
            "CertificateCredential",
        ),
        (
            {"AZURE_TENANT_ID": "t1", "AZURE_CLIENT_ID": "c1", "AZURE_FEDERATED_TOKEN_FILE": "/var/run/token"},
            "workload_identity",
            "WorkloadIdentityCredential",
        ),
    ],
)
def test_credential_construction(extra: dict[str, str], kind: str, cls: str, tmp_path: Any) -> None:
    """Secret, certificate and workload identity build azure-identity's own credential types."""
    if kind == "certificate":
        extra = {**extra, "AZURE_CLIENT_CERTIFICATE_PATH": str(client_bundle(tmp_path))}
    settings = load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "INVITE_REDIRECT_URL": "https://x.example",
            "GRAPH_CLOUD": "usgov",
            **extra,
        }
    )
    credential = build_credential(settings)
    assert settings.graph_credential == kind
    assert type(credential).__name__ == cls
    assert settings.authority_host == "login.microsoftonline.us"


async def test_emulator_request_log_is_json_serialisable(
    directory: MsGraphDirectory, emulator: GraphEmulator, graph_base: str
) -> None:
    """The request log the tests and benchmarks read (/_emulator/requests) is plain JSON, bodies included."""
    emulator.faults.append(Fault(kind="acted504", times=1))
    with pytest.raises(AmbiguousGraphError):
        await directory.invite(SAM)
    await directory.find_users_by_email("sam@fabrikam.com")
    # A token request shows too when this process had no token yet.
    assert [r.operation for r in emulator.requests if r.operation != "msi-token"] == ["invitation", "list-users"]
    async with httpx.AsyncClient(base_url=graph_base) as http:
        served = (await http.get("/_emulator/requests")).json()
    assert served == json.loads(json.dumps([dataclasses.asdict(r) for r in emulator.requests]))
    [post] = [r for r in served if r["operation"] == "invitation"]
    assert post["body"] == SAM_BODY and (post["status"], post["fault"], post["acted"]) == (504, "acted504", True)


class ScopeRecordingCredential:
    """Wraps a real credential and records the scopes the SDK asks it for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.scopes.append(scopes)
        return await self.inner.get_token("https://graph.microsoft.com/.default")

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize(
    ("cloud", "scope"),
    [
        ("global", "https://graph.microsoft.com/.default"),
        ("usgov", "https://graph.microsoft.us/.default"),
        ("china", "https://microsoftgraph.chinacloudapi.cn/.default"),
    ],
)
async def test_sdk_asks_for_the_clouds_scope(
    app_env: dict[str, str], emulator: GraphEmulator, cloud: str, scope: str
) -> None:
    """Through msgraph-sdk's auth provider, the token requested is the cloud's, wherever requests go."""
    settings = load_settings({**app_env, "GRAPH_CLOUD": cloud})
    credential = ScopeRecordingCredential(build_credential(settings))
    http = build_http_client(settings)
    directory = MsGraphDirectory(build_graph_client(settings, credential, http), WritePacer(10, 1))
    try:
        await directory.invite(Invitation("sam@fabrikam.com", "Sam", OPTIONS))
    finally:
        await http.aclose()
        await credential.close()
    assert credential.scopes and all(s == (scope,) for s in credential.scopes)
    assert _posts(emulator)[0].status == 201


@asynccontextmanager
async def _shared(settings: Settings, **kw: Any) -> AsyncIterator[tuple[MsGraphDirectory, TableBudgetStore]]:
    """A directory whose writes draw on the shared budget in Azurite, and that budget's store."""
    table = build_table_client(settings)
    gate = build_gate(settings, table)
    assert gate is not None
    try:
        async with _directory_for(settings, WritePacer(3000, 150), gate=gate, **kw) as directory:
            yield directory, TableBudgetStore(table)
    finally:
        await table.close()


async def test_writes_carry_throttle_priority_and_draw_on_the_shared_budget(
    settings: Settings, emulator: GraphEmulator
) -> None:
    """Invitations ask Graph for "high" priority (a person waits), bulk invitations "low", group additions
    "normal"; each write took a slot of the shared budget in Table storage, invitations of both limits."""
    async with _shared(settings, max_pacing_wait=5) as (directory, store):
        result = await directory.invite(Invitation("prio@fabrikam.com", "P", OPTIONS))
        await directory.invite(Invitation("bulk@fabrikam.com", "B", OPTIONS, priority="low"))
        emulator.groups["g1"] = set()
        await directory.add_group_member("g1", result.invited_user_id or "")
        writes, invitations = await store.read(WRITES), await store.read(INVITATIONS)
    priorities = [
        (r.operation, r.headers.get("x-ms-throttle-priority"))
        for r in emulator.requests
        if r.operation in {"invitation", "group-member-ref"}
    ]
    assert priorities == [("invitation", "high"), ("invitation", "low"), ("group-member-ref", "normal")]
    assert writes is not None and invitations is not None  # both schedules exist in Table storage


async def test_a_429_reaches_the_shared_state(settings: Settings, emulator: GraphEmulator) -> None:
    """A 429 met by one instance blocks the shared schedule, so another instance's next slot waits for it."""
    emulator.faults.append(Fault(kind="429", times=1, retry_after=0.5))
    async with _shared(settings, max_throttle_wait=10) as (directory, store):
        await directory.invite(Invitation("throttled@fabrikam.com", "T", OPTIONS))
        state = await store.read(WRITES)
    assert state is not None and state.blocked_until > 0
    assert [r.status for r in emulator.requests if r.operation == "invitation"] == [429, 201]


async def test_send_mail_through_the_sdk_conforms_and_is_recorded(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    """sendMail: the SDK's body passes Microsoft's schema; the emulator records what was sent."""
    message = MailMessage(to=("ana@fabrikam.com",), subject="Welcome", html_body="<p>Hi &amp; welcome</p>")
    await directory.send_mail("portal@contoso.com", message)
    [sent] = emulator.sent_mails
    assert (sent["sender"], sent["to"], sent["subject"]) == ("portal@contoso.com", ["ana@fabrikam.com"], "Welcome")
    assert sent["body"] == "<p>Hi &amp; welcome</p>" and sent["contentType"].lower() == "html"
    [request] = [r for r in emulator.requests if r.operation == "send-mail"]
    assert request.findings == [] and request.status == 202
    with pytest.raises(PermanentGraphError) as unknown:
        await directory.send_mail("nobody@contoso.com", message)
    assert unknown.value.status == 404


@pytest.mark.parametrize(
    ("kind", "error", "sent"),
    [("429", TransientGraphError, 0), ("503", AmbiguousGraphError, 0), ("acted504", AmbiguousGraphError, 1)],
)
async def test_send_mail_failures_are_classified(
    directory: MsGraphDirectory, emulator: GraphEmulator, kind: str, error: type[GraphError], sent: int
) -> None:
    """A 429 proves nothing was sent (retry later); any 5xx may have sent it (ambiguous: never resent)."""
    emulator.faults.append(Fault(kind, operation="send-mail", times=1, retry_after=None))
    with pytest.raises(error):
        await directory.send_mail("portal@contoso.com", MailMessage(("a@fabrikam.com",), "S", "<p>b</p>"))
    assert len(emulator.sent_mails) == sent


async def test_verified_domains_are_read_once_and_responses_conform(
    directory: MsGraphDirectory, emulator: GraphEmulator, graph_base: str
) -> None:
    emulator.config.verified_domains = ("contoso.onmicrosoft.com", "Contoso.com")
    assert await directory.verified_domains() == {"contoso.onmicrosoft.com", "contoso.com"}
    assert await directory.verified_domains() == {"contoso.onmicrosoft.com", "contoso.com"}  # cached
    assert len([r for r in emulator.requests if r.operation == "domains"]) == 1
    token = next(iter(emulator.tokens))
    async with httpx.AsyncClient(base_url=graph_base, headers={"Authorization": f"Bearer {token}"}) as http:
        for path, operation in (
            ("/v1.0/domains", "domain-collection-response"),
            ("/v1.0/organization", "organization-collection-response"),
        ):
            body = (await http.get(path)).json()
            assert schema.errors(operation, body) == [], path
