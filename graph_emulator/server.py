"""A local Microsoft Graph emulator: the calls the portal makes, over real HTTP.

Graph endpoints (under ``/v1.0``; a bearer token from the emulator's own token
endpoint is required):

* ``POST /invitations``: 201 with ``id``, ``inviteRedeemUrl``, ``invitedUser.id`` and a
  guest user ``name_domain#EXT#@tenant``; re-inviting an address returns the same
  user with a new redeem URL; ``invitedUser.id`` converts an internal user (with
  the documented pre-checks); ``resetRedemption`` resets a guest.
* ``GET /users`` with the ``$filter`` forms the app uses; ``GET``/``PATCH /users/{id}``;
  ``POST /groups/{id}/members/$ref``.
* ``POST /users/{id|upn}/sendMail`` (202; the sender must be a user or one of
  ``Config.mailboxes``): every mail is recorded in ``sent_mails`` and served at
  ``/_emulator/mails``; ``GET /domains`` and ``GET /organization`` from
  ``Config.verified_domains``.

Every request body is validated against Microsoft's published schema
(``schema.py``); a body that does not conform gets 400 with Graph's error
envelope. Two of Graph's limits are modelled as token buckets: the per-app write
limit (3,000 writes per 150 s by default) and the invitation manager's tenant
limit (any request on ``/invitations``, 150 per 5 s, all apps together). An empty
bucket answers 429 with ``Retry-After`` and ``x-ms-throttle-scope`` /
``x-ms-throttle-information`` naming the limit, and a throttled call still costs a
token, as in Graph. Past 80 % of a limit, responses carry
``x-ms-throttle-limit-percentage`` as Graph sends it: a fraction from 0.8 to 1.8.

``Config.strict_buckets`` (``--strict-buckets``, or ``{"strict_buckets": true}`` on
``/_emulator/config``) makes both limits plain token buckets instead: full at
start, refilled continuously, never below zero, so a throttled call costs
nothing and a client that has run ahead cannot hide it in a debt that later
throttling pays off. A strict bucket is the reading of Graph's limit that
forgives least: a client that meets no 429 from it spends only tokens it had.

Faults (``Fault``) fail a request by kind: a status (``400`` ... ``504``) or a lost
answer (``timeout``, ``drop``), neither of which acts; or ``acted504``,
``acteddrop``, ``actedtimeout``, which perform the write first and then lose the
answer, as when Graph created the invitation and the gateway failed; or
``misdirected``, which performs the write and answers 201 naming another
``invitedUser.id``. ``hold`` (before acting) and ``actedhold`` (after acting,
before answering) keep the request waiting until ``release()`` or ``POST
/_emulator/release``; ``wait_held()`` tells a test the request is in Graph's
hands, so it can kill the caller or stop its storage inside the call. Every
invitation Graph performs with ``sendInvitationMessage: true`` counts one
Microsoft mail to that address.

Token endpoints: ``GET /msi/token`` speaks the App Service managed-identity
protocol (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``), so azure-identity's own
``ManagedIdentityCredential`` runs against it; ``POST /{tenant}/oauth2/v2.0/token``
takes client-credential grants (secret or certificate assertion).

Control endpoints under ``/_emulator`` (no auth): ``requests`` (everything
received, with validation findings), ``mails`` (what sendMail sent), ``stats`` (counts; per-address counts are
keyed by ``address_key``, never by the address), ``faults``, ``users``, ``groups``,
``config``, ``release`` and ``reset``.

The guest lifecycle's endpoints (disable, delete and restore, memberships, sign-in activity,
redemption) live in ``lifecycle.py`` and are registered from ``make_app``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from . import schema

log = logging.getLogger("graph_emulator")

TENANT_ID = "72f988bf-0000-4000-8000-00000000e2e0"
TENANT_DOMAIN = "contoso.onmicrosoft.com"
APP_ID = "0e6ba6b0-0000-4000-8000-00000000e2e0"
# What a Fault can apply to (its ``operation``; ``*`` is any).
OPERATIONS = (
    "invitation",
    "list-users",
    "get-user",
    "user-update",
    "group-member-ref",
    "send-mail",
    "domains",
    "organization",
    # the guest lifecycle's (graph_emulator.lifecycle)
    "list-guests",
    "user-delete",
    "deleted-item",
    "restore",
    "member-of",
    "group-member-remove",
    "*",
)
# Faults that perform the write and then lose its answer (Graph acted; the client cannot know).
ACTED_KINDS = ("acted504", "acteddrop", "actedtimeout", "actedhold")
# Faults that hold the request until a test calls ``release()`` (or ``timeout_fault_seconds`` pass):
# ``hold`` before Graph acts, ``actedhold`` after it acted and before it answers. ``wait_held()`` says when
# a request is being held, so a test can fault the caller (kill it, stop its storage) inside the call.
HOLD_KINDS = ("hold", "actedhold")
FAULT_KINDS = (
    "400",
    "401",
    "403",
    "404",
    "408",
    "409",
    "412",
    "429",
    "500",
    "502",
    "503",
    "504",
    "timeout",
    "drop",
    "hold",
    "misdirected",
    *ACTED_KINDS,
)
FAULT_ERRORS = {
    "400": (400, "BadRequest", "Invalid request: the invited user's address was refused."),
    "401": (401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    "403": (
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation. ActionName=CreateInvite",
    ),
    "404": (
        404,
        "Request_ResourceNotFound",
        "Resource does not exist or one of its queried reference-property objects are not present.",
    ),
    "408": (408, "RequestTimeout", "The request timed out."),
    "409": (409, "Conflict", "Another object with the same value for property proxyAddresses already exists."),
    "412": (412, "PreconditionFailed", "The user is blocked from signing in."),
    "429": (429, "TooManyRequests", "Too many requests."),
    "500": (500, "generalException", "An internal server error occurred."),
    "502": (502, "BadGateway", "The gateway received an invalid response."),
    "503": (503, "serviceNotAvailable", "The service is temporarily unavailable."),
    "504": (504, "GatewayTimeout", "The operation timed out."),
}
# Graph sends x-ms-throttle-limit-percentage from 80 % of a limit on, as a fraction up to 1.8.
LIMIT_REPORTED_FROM = 0.8
LIMIT_REPORTED_UP_TO = 1.8
_FILTER_CLAUSE = re.compile(
    r"^\s*(?:"
    r"(?P<prop>mail|userPrincipalName)\s+eq\s+'(?P<v1>(?:[^']|'')*)'"
    r"|(?P<coll>otherMails|proxyAddresses)/any\((?P<var>\w+):(?P=var)\s+eq\s+'(?P<v2>(?:[^']|'')*)'\)"
    r")\s*$",
    re.IGNORECASE,
)


def graph_error(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A response in Graph's error envelope."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": now, "request-id": request_id, "client-request-id": request_id},
        }
    }
    return web.json_response(body, status=status, headers={"request-id": request_id, **(headers or {})})


@dataclass
class Fault:
    """A planned failure: for one address (or any request), a number of times or at a rate."""

    kind: str
    address: str | None = None
    times: int | None = None
    rate: float | None = None
    operation: str = "invitation"
    retry_after: float | None = 2.0  # on a 429 or 503; None sends none, as Graph may under load

    def matches(self, operation: str, address: str | None, rng: random.Random) -> bool:
        if operation != self.operation and self.operation != "*":
            return False
        if self.address is not None and (address or "").lower() != self.address.lower():
            return False
        if self.times is not None and self.times <= 0:
            return False
        return self.rate is None or rng.random() < self.rate


@dataclass
class Config:
    """Tunable behaviour (all changeable at run time through ``/_emulator/config``)."""

    latency_ms: float = 0.0
    write_budget: int = 3000
    write_window_seconds: float = 150.0
    invitation_budget: int = 150
    invitation_window_seconds: float = 5.0
    # Plain token buckets (never negative) instead of the default debt-keeping ones; see the module docstring.
    strict_buckets: bool = False
    identity_header: str = "local-graph-emulator"
    timeout_fault_seconds: float = 120.0
    seed: int = 0
    # The tenant's verified domains (GET /domains, /organization): addresses in them are members.
    verified_domains: tuple[str, ...] = (TENANT_DOMAIN, "contoso.com")
    # Mailboxes that may send (besides any user in the directory): POST /users/{id|upn}/sendMail.
    mailboxes: tuple[str, ...] = ("portal@contoso.com",)
    # Entra ID P1/P2 in the tenant: without it, selecting signInActivity answers 403 (FACTS.md, Guest lifecycle).
    premium_licence: bool = True


def address_key(email: str) -> str:
    """A stable key for an address in ``/_emulator/stats`` (which may end up in logs; the address must not)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


class WriteBucket:
    """One of Graph's limits: ``budget`` requests refilled evenly over ``window`` seconds.

    By default a throttled call still costs a token and the bucket may owe up to a whole budget.
    ``strict``: a plain token bucket that never goes below zero, where a throttled call costs nothing.
    """

    def __init__(self, budget: int, window: float, *, strict: bool = False) -> None:
        self.budget = budget
        self.rate = budget / window
        self.strict = strict
        self.tokens = float(budget)
        self.stamp = time.monotonic()

    def take(self) -> tuple[bool, float, float]:
        """Spend one request; return (allowed, seconds until one is free, fraction of the limit used)."""
        now = time.monotonic()
        self.tokens = min(float(self.budget), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        allowed = self.tokens >= 1.0
        if self.strict:
            if allowed:
                self.tokens -= 1.0
            wait = 0.0 if allowed else (1.0 - self.tokens) / self.rate
            return allowed, wait, self.used()
        # A throttled call still costs: clients that hammer only dig the hole deeper (bounded).
        self.tokens = max(self.tokens - 1.0, -float(self.budget))
        wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
        return allowed, wait, self.used()

    def used(self) -> float:
        """The fraction of the limit in use: above 1.0 once callers have dug into it (capped at 1.8)."""
        return min(LIMIT_REPORTED_UP_TO, max(0.0, 1.0 - self.tokens / self.budget))


@dataclass
class Recorded:
    """One request as the emulator saw it."""

    seq: int
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    operation: str | None = None
    findings: list[dict[str, str]] = field(default_factory=list)
    status: int | None = None
    fault: str | None = None  # the fault kind applied, if any
    acted: bool = False  # an acted fault performed the write before losing its answer
    held: bool = False  # a hold fault kept it waiting for release()
    caller_gone: bool | None = None  # for a held request: had the caller hung up when it was released?


RID = web.RequestKey("rid", str)
REC = web.RequestKey("rec", Recorded)


class GraphEmulator:
    """State and handlers of one emulator instance."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.rng = random.Random(self.config.seed)
        # Issued tokens belong to the identities, not the directory: they survive reset().
        self.tokens: dict[str, dict[str, Any]] = {}
        from .lifecycle import Lifecycle  # imports this module's helpers

        self.lifecycle = Lifecycle(self)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, set[str]] = {}
        self.invitations: list[dict[str, Any]] = []
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        old = getattr(self, "_released", None)
        if old is not None:
            old.set()  # nothing stays held across a reset
        self._released = asyncio.Event()
        self._holding: dict[int, web.Request] = {}
        self._held_more = asyncio.Event()
        self.lifecycle.reset()
        # Mail sent through sendMail, in order: {sender, to, cc, subject, contentType, body, at}.
        self.sent_mails: list[dict[str, Any]] = []
        self._buckets()
        # Microsoft invitation mails sent, by lower-cased address (in process only; stats hash the keys).
        self.mails: dict[str, int] = {}
        self.stats: dict[str, int] = {
            "throttled": 0,
            "throttled_invitation_limit": 0,
            "invalid": 0,
            "faults": 0,
            "writes": 0,
        }

    def _buckets(self) -> None:
        strict = self.config.strict_buckets
        self.bucket = WriteBucket(self.config.write_budget, self.config.write_window_seconds, strict=strict)
        self.invitation_bucket = WriteBucket(
            self.config.invitation_budget, self.config.invitation_window_seconds, strict=strict
        )

    def add_user(self, **props: Any) -> dict[str, Any]:
        user = {
            "id": props.pop("id", None) or str(uuid.uuid4()),
            "accountEnabled": True,
            "userType": "Member",
            "creationType": None,
            "externalUserState": None,
            "otherMails": [],
            "proxyAddresses": [],
            "onPremisesUserPrincipalName": None,
            "onPremisesSyncEnabled": None,
            "identities": [],
            **props,
        }
        if user.get("mail") and not user["proxyAddresses"]:
            user["proxyAddresses"] = [f"SMTP:{user['mail']}"]
        self.users[user["id"]] = user
        return user

    # ------------------------------------------------------------------ plumbing
    def _record(self, request: web.Request, body: Any) -> Recorded:
        headers = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in request.headers.items()}
        rec = Recorded(
            len(self.requests) + 1, time.time(), request.method, request.path, dict(request.query), headers, body
        )
        self.requests.append(rec)
        return rec

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        grant = self.tokens.get(token)
        return bool(grant) and grant["expires_on"] > time.time()

    async def _latency(self) -> None:
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000.0)

    def _fault(self, operation: str, address: str | None) -> Fault | None:
        for fault in self.faults:
            if fault.matches(operation, address, self.rng):
                if fault.times is not None:
                    fault.times -= 1
                self.stats["faults"] += 1
                return fault
        return None

    async def _hold(self, request: web.Request) -> None:
        """Keep ``request`` waiting until ``release()`` (bounded by ``timeout_fault_seconds``)."""
        rec = request[REC]
        rec.held = True
        self._holding[rec.seq] = request
        self._held_more.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), self.config.timeout_fault_seconds)
        finally:
            del self._holding[rec.seq]
            rec.caller_gone = self.caller_gone(request)

    @staticmethod
    def caller_gone(request: web.Request) -> bool:
        """True once the client of ``request`` has closed its connection (or died)."""
        transport = request.transport
        return transport is None or transport.is_closing()

    def holding(self) -> list[Recorded]:
        """The requests a hold fault is keeping waiting right now."""
        return [request[REC] for request in self._holding.values()]

    def hung_up(self, rec: Recorded) -> bool:
        """True once the caller of the held request ``rec`` has closed its connection (or died)."""
        request = self._holding.get(rec.seq)
        return rec.caller_gone is True if request is None else self.caller_gone(request)

    async def wait_held(self, count: int = 1, within: float = 30.0) -> list[Recorded]:
        """Wait until at least ``count`` requests are held; those held then (TimeoutError if too few came)."""
        async with asyncio.timeout(within):
            while len(self._holding) < count:
                self._held_more.clear()
                await self._held_more.wait()
        return self.holding()

    def release(self) -> None:
        """Let every held request go on; later hold faults hold again."""
        self._released.set()
        self._released = asyncio.Event()

    async def _apply_fault(self, fault: Fault, request: web.Request, rid: str) -> web.StreamResponse:
        request[REC].fault = fault.kind
        kind = fault.kind.removeprefix("acted")
        if kind == "timeout":
            await asyncio.sleep(self.config.timeout_fault_seconds)
            return graph_error(504, "GatewayTimeout", "The operation timed out.", rid)
        if kind == "drop":
            transport = request.transport
            if transport is not None:
                transport.abort()  # the client sees the connection reset, with no answer
            return web.Response(status=500)
        status, code, message = FAULT_ERRORS[kind]
        headers = None
        if status in (429, 503) and fault.retry_after is not None:
            headers = {"Retry-After": f"{fault.retry_after:g}"}
        return graph_error(status, code, message, rid, headers)

    async def _faulted(
        self, operation: str, address: str | None, request: web.Request, perform: Callable[[], web.Response]
    ) -> web.StreamResponse:
        """Answer with ``perform()``, unless a fault applies: then fail instead, or (acted kinds) after it."""
        fault = self._fault(operation, address)
        if fault is None:
            return perform()
        if fault.kind in HOLD_KINDS:
            request[REC].fault = fault.kind
            if fault.kind == "hold":
                await self._hold(request)
                return perform()
            done = perform()
            request[REC].acted = done.status < 300
            await self._hold(request)
            return done
        if fault.kind == "misdirected":
            # The write is done, and the answer names another user (a conversion must notice).
            done = perform()
            if done.status == 201 and isinstance(done, web.Response) and done.body is not None:
                request[REC].fault = fault.kind
                body = json.loads(bytes(done.body))  # type: ignore[arg-type]
                body["invitedUser"] = {"id": str(uuid.uuid4())}
                return web.json_response(body, status=201, headers={"request-id": request[RID]})
            return done
        if fault.kind not in ACTED_KINDS:
            return await self._apply_fault(fault, request, request[RID])
        done = perform()
        if done.status >= 300:
            return done  # Graph did nothing, so there is nothing to lose
        request[REC].acted = True
        return await self._apply_fault(fault, request, request[RID])

    def _throttle(self, rid: str) -> tuple[web.Response | None, float]:
        """Charge one write; a 429 when the app's bucket is empty. Also returns the fraction of the limit used."""
        allowed, wait, used = self.bucket.take()
        if allowed:
            self.stats["writes"] += 1
            return None, used
        self.stats["throttled"] += 1
        return self._too_many(
            rid,
            wait,
            used,
            f"Tenant_Application/WriteLimitExceeded/{APP_ID}/{TENANT_ID}",
            "WriteLimitExceeded",
            "Too many requests; the application's write limit is exceeded.",
        ), used

    def _limit_invitations(self, rid: str) -> web.Response | None:
        """The invitation manager's limit: any request on /invitations, per tenant, all apps together."""
        allowed, wait, used = self.invitation_bucket.take()
        if allowed:
            return None
        self.stats["throttled"] += 1
        self.stats["throttled_invitation_limit"] += 1
        return self._too_many(
            rid,
            wait,
            used,
            f"Tenant/InvitationManager/{APP_ID}/{TENANT_ID}",
            "InvitationLimitExceeded",
            "Too many requests; the tenant's invitation limit is exceeded.",
        )

    @staticmethod
    def _too_many(rid: str, wait: float, used: float, scope: str, information: str, message: str) -> web.Response:
        headers = {
            "Retry-After": str(max(1, math.ceil(wait))),
            "x-ms-throttle-scope": scope,
            "x-ms-throttle-information": information,
            "x-ms-throttle-limit-percentage": _fraction(used),
        }
        return graph_error(429, "TooManyRequests", message, rid, headers)

    @staticmethod
    def _write_headers(rid: str, used: float | None = None) -> dict[str, str]:
        headers = {"request-id": rid, "client-request-id": rid}
        if used is not None and round(used, 2) >= LIMIT_REPORTED_FROM:
            headers["x-ms-throttle-limit-percentage"] = _fraction(used)
        return headers

    async def _read_json(self, request: web.Request, rec: Recorded, rid: str) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            rec.body = raw.decode("utf-8", "replace")
            raise web.HTTPBadRequest() from None
        rec.body = body
        return body

    async def _body(self, request: web.Request, operation: str) -> tuple[Any, web.Response | None]:
        """The request's JSON body and, when it does not conform to the schema, the 400 to answer."""
        rid, rec = request[RID], request[REC]
        body = await self._read_json(request, rec, rid)
        return body, self._check(rec, operation, body, rid)

    @staticmethod
    def _not_found(rid: str, what: str) -> web.Response:
        return graph_error(404, "Request_ResourceNotFound", f"Resource '{what}' does not exist.", rid)

    def _check(self, rec: Recorded, operation: str, body: Any, rid: str) -> web.Response | None:
        rec.operation = operation
        findings = schema.validate(operation, body)
        rec.findings = [asdict(f) for f in findings]
        errors = [f for f in findings if f.level == "error"]
        if errors:
            self.stats["invalid"] += 1
            message = "; ".join(f"{f.path}: {f.message}" for f in errors)
            return graph_error(400, "BadRequest", f"Request body does not conform: {message}", rid)
        return None

    # ------------------------------------------------------------------ middleware
    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_emulator") or not request.path.startswith("/v1.0/"):
            return await handler(request)
        rid = str(uuid.uuid4())
        request[RID] = rid
        rec = self._record(request, None)
        request[REC] = rec
        await self._latency()
        if not self._authorised(request):
            response: web.StreamResponse = graph_error(
                401, "InvalidAuthenticationToken", "Access token is empty or invalid.", rid
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPBadRequest:
                response = graph_error(400, "BadRequest", "Unable to read JSON request payload.", rid)
        rec.status = response.status
        return response

    # ------------------------------------------------------------------ tokens
    def _issue(self, resource: str, client_id: str) -> dict[str, Any]:
        token = "emu." + secrets.token_urlsafe(24)
        expires_on = int(time.time()) + 3600
        self.tokens[token] = {"resource": resource, "client_id": client_id, "expires_on": expires_on}
        return {"access_token": token, "expires_on": expires_on}

    async def msi_token(self, request: web.Request) -> web.Response:
        """App Service managed identity (api-version 2019-08-01)."""
        if request.headers.get("X-IDENTITY-HEADER") != self.config.identity_header:
            return web.json_response(
                {"error": "invalid_request", "error_description": "bad X-IDENTITY-HEADER"}, status=401
            )
        resource = request.query.get("resource", "")
        if not resource:
            return web.json_response(
                {"error": "invalid_request", "error_description": "resource is required"}, status=400
            )
        client_id = request.query.get("client_id", "system-assigned")
        issued = self._issue(resource, client_id)
        self.requests.append(
            Recorded(
                len(self.requests) + 1,
                time.time(),
                "GET",
                request.path,
                dict(request.query),
                {},
                None,
                "msi-token",
                status=200,
            )
        )
        return web.json_response(
            {
                "access_token": issued["access_token"],
                "expires_on": str(issued["expires_on"]),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            }
        )

    async def openid_configuration(self, request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}/{request.match_info['tenant']}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            }
        )

    async def oauth_token(self, request: web.Request) -> web.Response:
        """Client-credentials grant with a secret or a certificate assertion."""
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        client_id = str(form.get("client_id", ""))
        has_secret = bool(form.get("client_secret"))
        has_assertion = form.get(
            "client_assertion_type"
        ) == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" and bool(form.get("client_assertion"))
        if not client_id or not (has_secret or has_assertion):
            return web.json_response(
                {"error": "invalid_client", "error_description": "client credentials missing"}, status=401
            )
        if has_assertion and not _plausible_assertion(str(form["client_assertion"])):
            return web.json_response(
                {"error": "invalid_client", "error_description": "client_assertion is not a signed JWT"}, status=401
            )
        scope = str(form.get("scope", ""))
        issued = self._issue(scope.split()[0] if scope else "", client_id)
        kind = "secret" if has_secret else "certificate"
        self.requests.append(
            Recorded(
                len(self.requests) + 1,
                time.time(),
                "POST",
                request.path,
                {"credential": kind, "scope": scope},
                {},
                None,
                "oauth-token",
                status=200,
            )
        )
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": 3600,
                "ext_expires_in": 3600,
                "access_token": issued["access_token"],
            }
        )

    # ------------------------------------------------------------------ Graph: invitations
    def _guest_upn(self, email: str) -> str:
        return f"{email.replace('@', '_')}#EXT#@{TENANT_DOMAIN}"

    def _find_by_mail(self, email: str) -> dict[str, Any] | None:
        lowered = email.lower()
        for user in self.users.values():
            addresses = [user.get("mail") or "", *user.get("otherMails", [])]
            if any(a.lower() == lowered for a in addresses):
                return user
        return None

    def _redeem_url(self, user_id: str) -> str:
        ticket = secrets.token_urlsafe(24)
        inner = f"https://invitations.microsoft.com/redeem/?tenant={TENANT_ID}&user={user_id}&ticket={ticket}&ver=2.0"
        return "https://login.microsoftonline.com/redeem?rd=" + quote(inner, safe="")

    async def post_invitation(self, request: web.Request) -> web.StreamResponse:
        rid = request[RID]
        body, invalid = await self._body(request, "invitation")
        # The invitation manager counts every request on /invitations, before it reads the body.
        limited = self._limit_invitations(rid)
        if limited is not None:
            return limited
        if invalid is not None:
            return invalid
        return await self._faulted(
            "invitation", body["invitedUserEmailAddress"], request, lambda: self._invite(request, body)
        )

    def _invite(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """Perform one invitation (the write Graph does); the 201, or the error Graph would answer."""
        rid, rec = request[RID], request[REC]
        email = body["invitedUserEmailAddress"]
        throttled, used = self._throttle(rid)
        if throttled is not None:
            return throttled
        used = max(used, self.invitation_bucket.used())

        invited_id = (body.get("invitedUser") or {}).get("id")
        if invited_id:
            user = self.users.get(invited_id)
            if user is None:
                return self._not_found(rid, invited_id)
            if body.get("resetRedemption"):
                user["externalUserState"] = "PendingAcceptance"
            else:
                if user.get("onPremisesUserPrincipalName"):
                    return graph_error(
                        400, "BadRequest", "Cannot invite a user synchronised from on-premises directory.", rid
                    )
                if (user.get("mail") or "").lower() != email.lower():
                    return graph_error(
                        400, "BadRequest", "The invited user's mail must match invitedUserEmailAddress.", rid
                    )
                federated = any((i or {}).get("signInType") == "federated" for i in user.get("identities") or [])
                if user.get("externalUserState") or user.get("creationType") == "Invitation" or federated:
                    return graph_error(400, "BadRequest", "The user is already an external user.", rid)
                user["externalUserState"] = "PendingAcceptance"
        else:
            user = self._find_by_mail(email)
            if user is not None and user.get("creationType") != "Invitation":
                return graph_error(
                    400,
                    "BadRequest",
                    f"The invited user already exists in the directory as objectID {user['id']}.",
                    rid,
                )
            if user is None:
                user = self.add_user(
                    displayName=body.get("invitedUserDisplayName") or email.split("@")[0],
                    mail=email,
                    userPrincipalName=self._guest_upn(email),
                    userType=body.get("invitedUserType") or "Guest",
                    creationType="Invitation",
                    externalUserState="PendingAcceptance",
                )
        info = body.get("invitedUserMessageInfo") or {}
        invitation = {
            "@odata.context": f"{request.scheme}://{request.host}/v1.0/$metadata#invitations/$entity",
            "id": str(uuid.uuid4()),
            "inviteRedeemUrl": self._redeem_url(user["id"]),
            "invitedUserDisplayName": body.get("invitedUserDisplayName"),
            "invitedUserType": body.get("invitedUserType") or "Guest",
            "invitedUserEmailAddress": email,
            "sendInvitationMessage": bool(body.get("sendInvitationMessage", False)),
            "resetRedemption": bool(body.get("resetRedemption", False)),
            "inviteRedirectUrl": body["inviteRedirectUrl"],
            "status": "PendingAcceptance",
            "invitedUserMessageInfo": {
                "messageLanguage": info.get("messageLanguage"),
                "customizedMessageBody": info.get("customizedMessageBody"),
                "ccRecipients": info.get("ccRecipients") or [],
            },
            "invitedUser": {"id": user["id"]},
        }
        mailed = bool(invitation["sendInvitationMessage"])
        reset = bool(body.get("resetRedemption"))
        self.invitations.append(
            {"email": email.lower(), "user_id": user["id"], "seq": rec.seq, "mailed": mailed, "reset": reset}
        )
        if mailed:
            self.mails[email.lower()] = self.mails.get(email.lower(), 0) + 1
        return web.json_response(invitation, status=201, headers=self._write_headers(rid, used))

    # ------------------------------------------------------------------ Graph: users
    def _select(self, user: dict[str, Any], select: str | None) -> dict[str, Any]:
        if not select:
            return {
                k: v for k, v in user.items() if k in ("id", "displayName", "mail", "userPrincipalName", "userType")
            }
        wanted = [s.strip() for s in select.split(",") if s.strip()]
        return {k: user.get(k) for k in wanted}

    def _matches(self, user: dict[str, Any], clauses: list[tuple[str, str]]) -> bool:
        for prop, value in clauses:
            current = user.get(prop)
            values = current if isinstance(current, list) else [current]
            if any(isinstance(v, str) and v.lower() == value.lower() for v in values):
                return True
        return False

    async def list_users(self, request: web.Request) -> web.StreamResponse:
        if self.lifecycle.is_guest_query(request):
            return await self.lifecycle.list_guests(request)
        request[REC].operation = "list-users"
        return await self._faulted("list-users", None, request, lambda: self._list_users(request))

    def _list_users(self, request: web.Request) -> web.Response:
        rid = request[RID]
        refused = self.lifecycle.licence_refusal(request)
        if refused is not None:
            return refused
        raw = request.query.get("$filter")
        users = list(self.users.values())
        if raw:
            clauses = []
            for part in re.split(r"\s+or\s+", raw, flags=re.IGNORECASE):
                match = _FILTER_CLAUSE.match(part)
                if not match:
                    return graph_error(
                        400, "Request_UnsupportedQuery", f"Unsupported or invalid query filter clause: {part}", rid
                    )
                prop = match.group("prop") or match.group("coll")
                value = (match.group("v1") if match.group("v1") is not None else match.group("v2")).replace("''", "'")
                canonical = {
                    "mail": "mail",
                    "userprincipalname": "userPrincipalName",
                    "othermails": "otherMails",
                    "proxyaddresses": "proxyAddresses",
                }[prop.lower()]
                clauses.append((canonical, value))
            advanced = any(c in ("proxyAddresses", "otherMails") for c, _ in clauses) and len(clauses) > 1
            if advanced and not (
                request.headers.get("ConsistencyLevel") == "eventual" and request.query.get("$count") == "true"
            ):
                return graph_error(
                    400, "Request_UnsupportedQuery", "This query needs ConsistencyLevel: eventual and $count=true.", rid
                )
            users = [u for u in users if self._matches(u, clauses)]
        top = int(request.query.get("$top", "100"))
        page = [self._select(u, request.query.get("$select")) for u in users[:top]]
        body: dict[str, Any] = {
            "@odata.context": f"{request.scheme}://{request.host}/v1.0/$metadata#users",
            "value": page,
        }
        if request.query.get("$count") == "true":
            body["@odata.count"] = len(users)
        return web.json_response(body, headers={"request-id": rid})

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        request[REC].operation = "get-user"
        return await self._faulted("get-user", None, request, lambda: self._get_user(request))

    def _user_by_key(self, key: str) -> dict[str, Any] | None:
        """A user by object id or user principal name (Graph takes either in /users/{id | userPrincipalName})."""
        user = self.users.get(key)
        if user is None and "@" in key:
            lowered = key.lower()
            matches = (u for u in self.users.values() if str(u.get("userPrincipalName", "")).lower() == lowered)
            user = next(matches, None)
        return user

    def seed(self, users: list[dict[str, Any]]) -> int:
        """Add many users at once (``--users FILE``, ``POST /_emulator/seed``); how many were added."""
        for props in users:
            self.add_user(**props)
        return len(users)

    def _get_user(self, request: web.Request) -> web.Response:
        rid = request[RID]
        refused = self.lifecycle.licence_refusal(request)
        if refused is not None:
            return refused
        user = self._user_by_key(request.match_info["user_id"])
        if user is None:
            return self._not_found(rid, request.match_info["user_id"])
        return web.json_response(self._select(user, request.query.get("$select")), headers={"request-id": rid})

    async def patch_user(self, request: web.Request) -> web.StreamResponse:
        body, invalid = await self._body(request, "user-update")
        if invalid is not None:
            return invalid
        return await self._faulted("user-update", None, request, lambda: self._patch_user(request, body))

    def _patch_user(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        rid = request[RID]
        user = self._user_by_key(request.match_info["user_id"])
        if user is None:
            return self._not_found(rid, request.match_info["user_id"])
        throttled, used = self._throttle(rid)
        if throttled is not None:
            return throttled
        user.update(body)
        return web.Response(status=204, headers=self._write_headers(rid, used))

    async def add_member(self, request: web.Request) -> web.StreamResponse:
        body, invalid = await self._body(request, "group-member-ref")
        if invalid is not None:
            return invalid
        return await self._faulted("group-member-ref", None, request, lambda: self._add_member(request, body))

    def _add_member(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        rid = request[RID]
        group_id = request.match_info["group_id"]
        if group_id not in self.groups:
            return self._not_found(rid, group_id)
        member_id = str(body.get("@odata.id", "")).rstrip("/").rsplit("/", 1)[-1]
        if member_id not in self.users:
            return self._not_found(rid, member_id)
        throttled, used = self._throttle(rid)
        if throttled is not None:
            return throttled
        if member_id in self.groups[group_id]:
            return graph_error(
                400,
                "Request_BadRequest",
                "One or more added object references already exist for the following modified properties: 'members'.",
                rid,
            )
        self.groups[group_id].add(member_id)
        return web.Response(status=204, headers=self._write_headers(rid, used))

    # ------------------------------------------------------------------ Graph: mail and the tenant
    def _mailbox(self, sender: str) -> bool:
        lowered = sender.lower()
        if lowered in (m.lower() for m in self.config.mailboxes):
            return True
        return any(
            lowered in {str(u.get("id", "")).lower(), str(u.get("userPrincipalName") or "").lower()}
            for u in self.users.values()
        )

    async def send_mail(self, request: web.Request) -> web.StreamResponse:
        body, invalid = await self._body(request, "send-mail")
        if invalid is not None:
            return invalid
        return await self._faulted("send-mail", None, request, lambda: self._send_mail(request, body))

    def _send_mail(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        rid = request[RID]
        sender = request.match_info["user_id"]
        if not self._mailbox(sender):
            return self._not_found(rid, sender)
        # Property names are case-insensitive in Graph (the docs write message, the OpenAPI Message).
        lowered = {k.lower(): v for k, v in body.items()}
        message = {k.lower(): v for k, v in (lowered.get("message") or {}).items()}
        content = {k.lower(): v for k, v in (message.get("body") or {}).items()}

        def addresses(key: str) -> list[str]:
            found = []
            for recipient in message.get(key) or []:
                email = {k.lower(): v for k, v in recipient.items()}.get("emailaddress") or {}
                found.append(str({k.lower(): v for k, v in email.items()}.get("address", "")))
            return found

        self.sent_mails.append(
            {
                "sender": sender,
                "to": addresses("torecipients"),
                "cc": addresses("ccrecipients"),
                "subject": message.get("subject"),
                "contentType": content.get("contenttype"),
                "body": content.get("content"),
                "at": time.time(),
            }
        )
        return web.Response(status=202, headers=self._write_headers(rid))

    def _domains(self) -> list[dict[str, Any]]:
        return [
            {
                "id": name,
                "authenticationType": "Managed",
                "isAdminManaged": True,
                "isDefault": name == self.config.verified_domains[-1],
                "isInitial": name == TENANT_DOMAIN,
                "isRoot": True,
                "isVerified": True,
                "supportedServices": ["Email"],
                "state": None,
            }
            for name in self.config.verified_domains
        ]

    async def list_domains(self, request: web.Request) -> web.StreamResponse:
        request[REC].operation = "domains"

        def perform() -> web.Response:
            return web.json_response(
                {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#domains", "value": self._domains()},
                headers=self._write_headers(request[RID]),
            )

        return await self._faulted("domains", None, request, perform)

    async def get_organization(self, request: web.Request) -> web.StreamResponse:
        request[REC].operation = "organization"

        def perform() -> web.Response:
            organization = {
                "id": TENANT_ID,
                "displayName": "Contoso",
                "tenantType": "AAD",
                "verifiedDomains": [
                    {
                        "name": d["id"],
                        "isDefault": d["isDefault"],
                        "isInitial": d["isInitial"],
                        "capabilities": "Email",
                        "type": "Managed",
                    }
                    for d in self._domains()
                ],
            }
            return web.json_response(
                {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization", "value": [organization]},
                headers=self._write_headers(request[RID]),
            )

        return await self._faulted("organization", None, request, perform)

    # ------------------------------------------------------------------ control
    async def ctl_seed(self, request: web.Request) -> web.Response:
        return web.json_response({"added": self.seed(await request.json())}, status=201)

    async def ctl_mails(self, _: web.Request) -> web.Response:
        return web.json_response(self.sent_mails)

    async def ctl_requests(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        return web.json_response([asdict(r) for r in self.requests if r.seq > since])

    def invitations_per_address(self) -> dict[str, int]:
        """Invitations Graph performed, by lower-cased address (in process; stats hash the keys)."""
        per_address: dict[str, int] = {}
        for inv in self.invitations:
            per_address[inv["email"]] = per_address.get(inv["email"], 0) + 1
        return per_address

    async def ctl_stats(self, _: web.Request) -> web.Response:
        per_address = self.invitations_per_address()
        return web.json_response(
            {
                **self.stats,
                "invitations": len(self.invitations),
                "invited_addresses": len(per_address),
                "reinvited_addresses": sum(1 for n in per_address.values() if n > 1),
                "invitations_max_per_address": max(per_address.values(), default=0),
                "invitations_per_address": {address_key(a): n for a, n in per_address.items()},
                "mails": sum(self.mails.values()),
                "mails_max_per_address": max(self.mails.values(), default=0),
                "mails_per_address": {address_key(a): n for a, n in self.mails.items()},
                "requests": len(self.requests),
                "users": len(self.users),
            }
        )

    async def ctl_faults(self, request: web.Request) -> web.Response:
        if request.method == "DELETE":
            self.faults.clear()
            return web.json_response([])
        data = await request.json()
        items = data if isinstance(data, list) else [data]
        for item in items:
            if item.get("kind") not in FAULT_KINDS:
                return web.json_response({"error": f"kind must be one of {FAULT_KINDS}"}, status=400)
            self.faults.append(Fault(**item))
        return web.json_response([asdict(f) for f in self.faults])

    async def ctl_users(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response(list(self.users.values()))
        return web.json_response(self.add_user(**await request.json()), status=201)

    async def ctl_groups(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            group_id = (await request.json()).get("id") or str(uuid.uuid4())
            self.groups.setdefault(group_id, set())
            return web.json_response({"id": group_id}, status=201)
        return web.json_response({gid: sorted(m) for gid, m in self.groups.items()})

    async def ctl_config(self, request: web.Request) -> web.Response:
        if request.method == "PUT":
            for key, value in (await request.json()).items():
                if not hasattr(self.config, key):
                    return web.json_response({"error": f"unknown key {key}"}, status=400)
                if isinstance(getattr(self.config, key), bool) and not isinstance(value, bool):
                    return web.json_response({"error": f"{key} takes true or false"}, status=400)
                setattr(self.config, key, type(getattr(self.config, key))(value))
            self._buckets()
        return web.json_response(asdict(self.config))

    async def ctl_release(self, _: web.Request) -> web.Response:
        held = len(self._holding)
        self.release()
        return web.json_response({"released": held})

    async def ctl_reset(self, _: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    # ------------------------------------------------------------------ app
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        r = app.router
        r.add_post("/v1.0/invitations", self.post_invitation)
        r.add_get("/v1.0/users", self.list_users)
        r.add_get("/v1.0/users/{user_id}", self.get_user)
        r.add_patch("/v1.0/users/{user_id}", self.patch_user)
        r.add_post("/v1.0/groups/{group_id}/members/$ref", self.add_member)
        r.add_post("/v1.0/users/{user_id}/sendMail", self.send_mail)
        r.add_post("/v1.0/users/{user_id}/microsoft.graph.sendMail", self.send_mail)
        r.add_get("/v1.0/domains", self.list_domains)
        r.add_get("/v1.0/organization", self.get_organization)
        self.lifecycle.register(r)
        r.add_get("/msi/token", self.msi_token)
        r.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration)
        r.add_post("/{tenant}/oauth2/v2.0/token", self.oauth_token)
        r.add_get("/_emulator/requests", self.ctl_requests)
        r.add_get("/_emulator/stats", self.ctl_stats)
        r.add_get("/_emulator/mails", self.ctl_mails)
        r.add_post("/_emulator/seed", self.ctl_seed)
        r.add_route("*", "/_emulator/faults", self.ctl_faults)
        r.add_route("*", "/_emulator/users", self.ctl_users)
        r.add_route("*", "/_emulator/groups", self.ctl_groups)
        r.add_route("*", "/_emulator/config", self.ctl_config)
        r.add_post("/_emulator/release", self.ctl_release)
        r.add_post("/_emulator/reset", self.ctl_reset)
        return app


def _plausible_assertion(assertion: str) -> bool:
    """A JWT signed with RS256/PS256 that names its certificate by thumbprint (what Entra requires)."""
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts):
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return False
    return header.get("alg") in {"RS256", "PS256"} and bool(header.get("x5t") or header.get("x5t#S256"))


def _fraction(used: float) -> str:
    return f"{used:.2f}"


def http_date(seconds_from_now: float) -> str:
    """An HTTP date ``seconds_from_now`` in the future (for Retry-After tests)."""
    return format_datetime(datetime.fromtimestamp(time.time() + seconds_from_now, UTC), usegmt=True)
