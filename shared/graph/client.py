"""Microsoft Graph through msgraph-sdk: credentials, the client, and ``MsGraphDirectory``.

One ``GraphServiceClient`` per process, async all the way (``azure.identity.aio``).
The endpoint and token scope come from ``GRAPH_CLOUD``; ``GRAPH_BASE_URL`` points
the same code at another endpoint (the local Graph emulator).

Failures, classified once (``classify``), by whether Graph can have acted:

* ``PermanentGraphError``: Graph refused (400, 403, 404, 409, 412, ...); repeating
  the call would not help.
* ``TransientGraphError``: Graph did not act. 429, 401 and 408; a connection never
  made (connect error or timeout, no pooled connection free); no token from the
  identity endpoint; and, for reads, every server error or lost answer.
* ``AmbiguousGraphError``: a write went out and its answer was lost or was a
  server error (500, 502, 503, 504; a read or write timeout, a dropped
  connection). Graph may have acted: a 504 can come back after the invitation
  was created. The caller reads before it writes again.

Retries, decided once:

* The SDK's retry handler is switched off. It retries every method on 429, 503
  and 504, POST included, so a silent re-POST could invite twice inside one attempt.
* A 429 means Graph did not act on the request, so ``MsGraphDirectory`` retries it
  here, behind the shared ``WritePacer`` (which holds every caller for
  ``Retry-After``), as long as the total wait stays under ``max_throttle_wait``.
  Each write waits for its pacing slot at most ``max_pacing_wait`` seconds, or the
  pacer raises ``WriteDeferred`` and nothing is sent.
* Everything else is raised as classified, for the worker to decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar

import httpx
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.headers_collection import HeadersCollection
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import HeadersInspectionHandlerOption, RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.directory_object import DirectoryObject
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.invitation import Invitation as GraphInvitation
from msgraph.generated.models.invited_user_message_info import InvitedUserMessageInfo
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.user import User
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core import GraphClientFactory

from .. import telemetry
from ..errors import AmbiguousGraphError, GraphError, PermanentGraphError, TransientGraphError
from ..settings import Settings
from .budget import INVITATIONS, WRITES, SharedGate
from .directory import DirectoryUser, Invitation, InvitationResult, MailMessage
from .guest_calls import GuestLifecycleCalls
from .pacing import WritePacer

log = logging.getLogger(__name__)

T = TypeVar("T")
# 401 is here too: a rejected token is the app's credential problem, not the requester's; a later
# attempt may hold a fresh token, and if not the sign-up fails like any outage.
NOT_ACTED_STATUSES: Final = frozenset({401, 408, 429})
# Server errors: Graph may have done the work before it failed to answer (a 504 in particular).
SERVER_STATUSES: Final = frozenset({500, 502, 503, 504})
# Transport failures before any byte of the request left: Graph cannot have acted.
NOT_SENT_ERRORS: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)
USER_FIELDS: Final = [
    "id",
    "userType",
    "mail",
    "userPrincipalName",
    "onPremisesUserPrincipalName",
    "externalUserState",
    "onPremisesSyncEnabled",
    "creationType",
    "identities",
    "displayName",
]
# Under throttling Graph lets "low" go first and "high" last; it does not change the limits.
PRIORITY_HEADER: Final = "x-ms-throttle-priority"
# Graph's answer when the reference being added exists already.
ALREADY_MEMBER: Final = "already exist"
MAILBOX_CONCURRENCY: Final = 4  # Outlook: at most 4 concurrent requests per mailbox (throttling-limits page)
DOMAINS_TTL: Final = 300.0  # the tenant's verified domains change rarely: read them every 5 minutes at most


def build_credential(settings: Settings) -> Any:
    """The async azure-identity credential ``GRAPH_CREDENTIAL`` selects."""
    from azure.identity import aio

    authority = settings.authority_host
    if settings.graph_credential == "client_secret":
        return aio.ClientSecretCredential(
            settings.tenant_id or "",
            settings.client_id or "",
            settings.client_secret or "",
            authority=authority,
        )
    if settings.graph_credential == "certificate":
        return aio.CertificateCredential(
            settings.tenant_id or "",
            settings.client_id or "",
            certificate_path=settings.client_certificate_path,
            password=settings.client_certificate_password,
            authority=authority,
        )
    if settings.graph_credential == "workload_identity":
        return aio.WorkloadIdentityCredential(
            tenant_id=settings.tenant_id,
            client_id=settings.client_id,
            token_file_path=settings.federated_token_file,
            authority=authority,
        )
    # System-assigned, or user-assigned when AZURE_CLIENT_ID names it. Inside Functions and
    # App Service it reads IDENTITY_ENDPOINT / IDENTITY_HEADER; elsewhere in Azure, IMDS.
    return aio.ManagedIdentityCredential(client_id=settings.client_id)


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client Graph calls go through (the caller owns it and closes it); one span per call
    (``graph.call``: method, path, status, request-id; shared.telemetry mutes Kiota's own spans)."""
    transport = telemetry.traced_transport(httpx.AsyncHTTPTransport(), "graph.call")
    return httpx.AsyncClient(timeout=httpx.Timeout(settings.graph_timeout_seconds), transport=transport)


def build_graph_client(settings: Settings, credential: Any, http: httpx.AsyncClient) -> GraphServiceClient:
    """A ``GraphServiceClient`` for the configured cloud or ``GRAPH_BASE_URL``, over ``http``."""
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=[settings.graph_scope], allowed_hosts=[settings.graph_host]
    )
    http = GraphClientFactory.create_with_default_middleware(
        client=http,
        options={RetryHandlerOption.get_key(): RetryHandlerOption(max_retries=0, should_retry=False)},
    )
    adapter = GraphRequestAdapter(auth, http)
    adapter.base_url = settings.graph_base_url
    return GraphServiceClient(request_adapter=adapter)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    if isinstance(headers, HeadersCollection):
        values = headers.get(name)
        return next(iter(values), None) if values else None
    for key, value in dict(headers).items():
        if key.lower() == name.lower():
            return str(next(iter(value), "")) if isinstance(value, (set, list, tuple)) else str(value)
    return None


def answer_class(error: GraphError) -> str:
    """The class of a failed Graph answer for the ``graph.answers`` metric: 429, transient, ambiguous, permanent."""
    if error.status == 429:
        return "429"
    if isinstance(error, AmbiguousGraphError):
        return "ambiguous"
    return "transient" if isinstance(error, TransientGraphError) else "permanent"


def classify(exc: BaseException, *, write: bool) -> GraphError:
    """Map any failure of a Graph call to a permanent, transient or (for a write) ambiguous ``GraphError``."""
    if isinstance(exc, GraphError):
        return exc
    if isinstance(exc, APIError):
        status = exc.response_status_code
        headers = exc.response_headers
        code, message, request_id = f"Http{status}", str(exc), _header(headers, "request-id")
        if isinstance(exc, ODataError) and exc.error is not None:
            code = exc.error.code or code
            message = exc.error.message or message
            inner = exc.error.inner_error
            request_id = (inner.request_id if inner is not None else None) or request_id
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        if status in SERVER_STATUSES and write:
            return AmbiguousGraphError(
                message, code=code, status=status, request_id=request_id, retry_after=retry_after
            )
        if status in NOT_ACTED_STATUSES or status in SERVER_STATUSES:
            return TransientGraphError(
                message, code=code, status=status, request_id=request_id, retry_after=retry_after
            )
        return PermanentGraphError(message, code=code, status=status, request_id=request_id)
    if isinstance(exc, NOT_SENT_ERRORS):
        if isinstance(exc, httpx.TimeoutException):
            return TransientGraphError(f"no connection to Graph in time ({type(exc).__name__})", code="Timeout")
        return TransientGraphError(f"could not connect to Graph ({type(exc).__name__})", code="ConnectionFailed")
    if isinstance(exc, httpx.TransportError):
        # The request went out (all or part of it); only its answer is missing.
        if isinstance(exc, httpx.TimeoutException):
            code, message = "Timeout", "Graph did not answer in time"
        else:
            code, message = "ConnectionFailed", f"connection to Graph lost ({type(exc).__name__})"
        if write:
            return AmbiguousGraphError(f"{message}; the write may have been done", code=code)
        return TransientGraphError(message, code=code)
    if isinstance(exc, ClientAuthenticationError):
        # Usually configuration, sometimes a flaky identity endpoint; nothing reached Graph.
        return TransientGraphError("could not obtain a token for Graph", code="AuthenticationFailed")
    raise TypeError(f"not a Graph failure: {type(exc).__name__}") from exc


def odata_literal(value: str) -> str:
    """A string as an OData literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def email_filter(email: str) -> str:
    """The documented pre-check: every property that can hold an address already in use."""
    lit = odata_literal(email)
    smtp = odata_literal(f"smtp:{email}")
    return (
        f"mail eq {lit} or userPrincipalName eq {lit} or otherMails/any(m:m eq {lit})"
        f" or proxyAddresses/any(p:p eq {smtp})"
    )


def _user_from_json(data: dict[str, Any]) -> DirectoryUser:
    return DirectoryUser(
        id=str(data["id"]),
        user_type=data.get("userType"),
        mail=data.get("mail"),
        user_principal_name=data.get("userPrincipalName"),
        on_premises_user_principal_name=data.get("onPremisesUserPrincipalName"),
        external_user_state=data.get("externalUserState"),
        on_premises_sync_enabled=data.get("onPremisesSyncEnabled"),
        creation_type=data.get("creationType"),
        identities=tuple(
            (str(i.get("signInType") or ""), str(i.get("issuer") or ""))
            for i in data.get("identities") or ()
            if isinstance(i, dict)
        ),
        display_name=data.get("displayName"),
    )


def _to_user(user: User) -> DirectoryUser:
    return DirectoryUser(
        id=user.id or "",
        user_type=user.user_type,
        mail=user.mail,
        user_principal_name=user.user_principal_name,
        on_premises_user_principal_name=user.on_premises_user_principal_name,
        external_user_state=user.external_user_state,
        on_premises_sync_enabled=user.on_premises_sync_enabled,
        creation_type=user.creation_type,
        identities=tuple((i.sign_in_type or "", i.issuer or "") for i in user.identities or ()),
        display_name=user.display_name,
    )


def to_graph_invitation(invitation: Invitation) -> GraphInvitation:
    """The msgraph-sdk model for an invitation (only the fields that are set)."""
    opts = invitation.options
    body = GraphInvitation(
        invited_user_email_address=invitation.email,
        invite_redirect_url=opts.redirect_url,
        send_invitation_message=opts.send_message,
    )
    if opts.user_type:
        body.invited_user_type = opts.user_type
    if invitation.display_name:
        body.invited_user_display_name = invitation.display_name
    if opts.send_message and (opts.message_language or opts.message_body or opts.cc_address):
        info = InvitedUserMessageInfo()
        if opts.message_body:
            info.customized_message_body = opts.message_body
        elif opts.message_language:  # Graph ignores the language when a custom body is given
            info.message_language = opts.message_language
        if opts.cc_address:
            info.cc_recipients = [Recipient(email_address=EmailAddress(address=opts.cc_address))]
        body.invited_user_message_info = info
    if opts.sponsor_ids:
        body.invited_user_sponsors = [DirectoryObject(id=sponsor) for sponsor in opts.sponsor_ids]
    if invitation.invited_user_id:
        body.invited_user = User(id=invitation.invited_user_id)
    if invitation.reset_redemption:
        body.reset_redemption = True
    return body


class MsGraphDirectory(GuestLifecycleCalls):
    """``Directory`` over msgraph-sdk, with writes paced by a shared ``WritePacer``.

    The guest lifecycle's calls (block, remove memberships, delete, restore, guests with sign-in
    activity) come from ``GuestLifecycleCalls`` in ``guest_calls``.
    """

    def __init__(
        self,
        client: GraphServiceClient,
        pacer: WritePacer,
        *,
        max_throttle_wait: float = 60.0,
        max_pacing_wait: float | None = None,
        gate: SharedGate | None = None,
        directory_object_base: str = "https://graph.microsoft.com/v1.0",
    ) -> None:
        self._client = client
        self._pacer = pacer
        self._gate = gate
        self._max_throttle_wait = max_throttle_wait
        self._max_pacing_wait = max_pacing_wait
        self._object_base = directory_object_base.rstrip("/")
        self._mailboxes: dict[str, asyncio.Semaphore] = {}
        self._domains: tuple[float, frozenset[str]] | None = None
        self._domains_lock = asyncio.Lock()  # one read per expiry, however many callers wait for it

    async def _slot(self, limits: Sequence[str]) -> float:
        """Wait for the local pacer, then for the shared budget's slot of each limit; the seconds waited.

        Raises ``WriteDeferred`` (nothing sent) when the wait would pass ``max_pacing_wait``.
        """
        waited = await self._pacer.acquire(self._max_pacing_wait)
        if self._gate is not None:
            bound = None if self._max_pacing_wait is None else max(0.0, self._max_pacing_wait - waited)
            waited += await self._gate.acquire(limits, bound)
        return waited

    async def _write(
        self,
        call: Callable[[RequestConfiguration[Any]], Awaitable[T]],
        *,
        limits: Sequence[str] = (WRITES,),
        priority: str = "normal",
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[T, str | None]:
        """One write through the pacer; 429s retried after Retry-After, everything else raised as classified.

        ``fence`` (the caller's lease) runs after each wait and right before each send.
        """
        waited = 0.0
        while True:
            waited += await self._slot(limits)
            if fence is not None:
                await fence()
            inspect = HeadersInspectionHandlerOption(inspect_request_headers=False)
            config: RequestConfiguration[Any] = RequestConfiguration(options=[inspect])
            config.headers.add(PRIORITY_HEADER, priority)
            try:
                with telemetry.span("graph.write", graph__limits=",".join(limits), graph__priority=priority):
                    result = await call(config)
            except Exception as exc:
                error = classify(exc, write=True)
                telemetry.count("graph.answers", graph__class=answer_class(error), graph__status=error.status or 0)
                if isinstance(error, TransientGraphError) and error.status == 429:
                    self._pacer.throttled(error.retry_after)
                    if self._gate is not None:
                        # Every instance pauses, not only the one that met the 429.
                        await self._gate.throttled(self._pacer.estimate())
                    # The pause itself is spent inside the next acquire(), which adds it to `waited`.
                    if waited + self._pacer.estimate() <= self._max_throttle_wait:
                        continue
                raise error from exc
            telemetry.count("graph.answers", graph__class="ok", graph__status=200)
            headers = inspect.response_headers
            fraction = _header(headers, "x-ms-throttle-limit-percentage")
            if fraction:
                with contextlib.suppress(ValueError):
                    self._pacer.near_limit(float(fraction))
            return result, _header(headers, "request-id")

    async def _json(self, request: RequestInformation) -> dict[str, Any]:
        """Send a request built by msgraph-sdk and read the answer as plain JSON.

        The SDK's own models are skipped on the way back: building a ``User`` or ``Invitation`` object
        costs milliseconds of CPU each (most of a bulk run's time, measured with cProfile), and the portal
        reads only a few fields. Errors still come back as the SDK's ``ODataError``.
        """
        raw = await self._client.request_adapter.send_primitive_async(request, "bytes", {"XXX": ODataError})
        data = json.loads(raw) if raw else {}
        return data if isinstance(data, dict) else {}

    async def invite(
        self, invitation: Invitation, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> InvitationResult:
        body = to_graph_invitation(invitation)
        result, request_id = await self._write(
            lambda config: self._json(self._client.invitations.to_post_request_information(body, config)),
            limits=(WRITES, INVITATIONS),
            priority=invitation.priority,
            fence=fence,
        )
        if not result:
            raise PermanentGraphError("Graph returned no invitation", code="EmptyResponse")
        invited = result.get("invitedUser") or {}
        return InvitationResult(
            invitation_id=result.get("id"),
            invited_user_id=invited.get("id") if isinstance(invited, dict) else None,
            status=result.get("status"),
            redeem_url=result.get("inviteRedeemUrl"),
            request_id=request_id,
        )

    async def find_users_by_email(self, email: str) -> list[DirectoryUser]:
        params = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            filter=email_filter(email), select=USER_FIELDS, count=True, top=10
        )
        config = RequestConfiguration(query_parameters=params)
        # proxyAddresses/any(...) is an advanced query: it needs ConsistencyLevel and $count.
        config.headers.add("ConsistencyLevel", "eventual")
        try:
            page = await self._client.users.get(request_configuration=config)
        except Exception as exc:
            raise classify(exc, write=False) from exc
        return [_to_user(user) for user in (page.value if page and page.value else [])]

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

        params = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=USER_FIELDS)
        builder = self._client.users.by_user_id(user_id)
        try:
            data = await self._json(builder.to_get_request_information(RequestConfiguration(query_parameters=params)))
        except Exception as exc:
            error = classify(exc, write=False)
            if error.status == 404:
                return None
            raise error from exc
        return _user_from_json(data) if data.get("id") else None

    async def set_user_type(self, user_id: str, user_type: str, *, priority: str = "normal") -> None:
        body = User(user_type=user_type)
        await self._write(
            lambda config: self._client.users.by_user_id(user_id).patch(body, request_configuration=config),
            priority=priority,
        )

    async def send_mail(self, sender: str, message: MailMessage) -> None:
        body = SendMailPostRequestBody(
            message=Message(
                subject=message.subject,
                body=ItemBody(content_type=BodyType.Html, content=message.html_body),
                to_recipients=[Recipient(email_address=EmailAddress(address=a)) for a in message.to],
                reply_to=[Recipient(email_address=EmailAddress(address=a)) for a in message.reply_to] or None,
            ),
            save_to_sent_items=False,
        )
        # Not the directory's write budget: Outlook limits mail per mailbox (4 concurrent requests).
        async with self._mailbox_gate(sender):
            try:
                await self._client.users.by_user_id(sender).send_mail.post(body)
            except Exception as exc:
                # A lost answer may mean the mail went: ambiguous, never retried by the caller.
                raise classify(exc, write=True) from exc

    def _mailbox_gate(self, sender: str) -> asyncio.Semaphore:
        gate = self._mailboxes.get(sender.lower())
        if gate is None:
            gate = self._mailboxes[sender.lower()] = asyncio.Semaphore(MAILBOX_CONCURRENCY)
        return gate

    async def verified_domains(self) -> frozenset[str]:
        cached = self._domains
        if cached is not None and time.monotonic() - cached[0] < DOMAINS_TTL:
            return cached[1]
        async with self._domains_lock:
            # Whoever waited here while another caller read them finds them fresh now.
            cached = self._domains
            if cached is not None and time.monotonic() - cached[0] < DOMAINS_TTL:
                return cached[1]
            try:
                page = await self._client.domains.get()
            except Exception as exc:
                raise classify(exc, write=False) from exc
            names = frozenset(
                (d.id or "").lower() for d in (page.value if page and page.value else []) if d.id and d.is_verified
            )
            self._domains = (time.monotonic(), names)
            return names

    async def add_group_member(self, group_id: str, user_id: str) -> None:
        body = ReferenceCreate(odata_id=f"{self._object_base}/directoryObjects/{user_id}")
        try:
            await self._write(
                lambda config: self._client.groups.by_group_id(group_id).members.ref.post(
                    body, request_configuration=config
                )
            )
        except PermanentGraphError as exc:
            if exc.status == 400 and ALREADY_MEMBER in str(exc):
                return
            raise
