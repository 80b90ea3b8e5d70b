"""The host's side of HTTP authentication: function keys, and a stand-in for Easy Auth.

Function keys. The Functions host refuses a call to a function whose
``authLevel`` is ``function`` (or ``admin``) unless it carries a key, in the
``x-functions-key`` header or the ``code`` query parameter, and answers 401 with
an empty body. This host does the same, with one key: the environment variable
``DEVHOST_FUNCTION_KEY`` (``make run`` generates one when it is unset). With no
key configured every such call is refused, so a forgotten key never means an
open admin API.

Easy Auth stand-in (``DEVHOST_EASY_AUTH=1``, development and tests only). App
Service Authentication removes any ``X-MS-CLIENT-PRINCIPAL*`` header a client
sends and, for a signed-in session, sets its own. This host does the same: a
dev-only sign-in at ``/.auth/login/dev`` takes a name and app roles (no
password: it is not an identity provider, which is why it is off unless the
local host is told to run it), keeps them in an HMAC-signed cookie, and injects
the principal headers the platform would. ``/.auth/me`` and ``/.auth/logout``
behave like the platform's. The app trusts those headers only when its
``MANAGE_EASY_AUTH_ROLE`` setting says Easy Auth fronts it. Client-sent
principal headers are stripped whether the stand-in runs or not, and
``WEBSITE_AUTH_ENABLED`` is read with the app's own parser (``shared.flags``), so
``True`` or ``1`` means to the host what it means to the app.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger(__name__)

KEY_HEADER: Final = "x-functions-key"
KEY_LEVELS: Final = frozenset({"function", "admin"})
PRINCIPAL_PREFIX: Final = "x-ms-client-principal"
SESSION_COOKIE: Final = "AppServiceAuthSession"


def auth_level_of(trigger: Mapping[str, Any]) -> str:
    """The binding's ``authLevel`` in lower case (``function`` when unset, as the host assumes)."""
    level = trigger.get("authLevel")
    return str(getattr(level, "value", level) or "function").lower()


def key_accepted(request: web.Request, expected: str | None) -> bool:
    """True when the request carries the configured function key (compared in constant time)."""
    if not expected:
        return False
    given = request.headers.get(KEY_HEADER) or request.query.get("code") or ""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def principal_header(name: str, roles: list[str]) -> str:
    """``X-MS-CLIENT-PRINCIPAL`` as the platform encodes it: base64 of the claims JSON."""
    claims = [{"typ": "name", "val": name}, *({"typ": "roles", "val": role} for role in roles)]
    body = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii")


def without_principals(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` less every ``X-MS-CLIENT-PRINCIPAL*``: only the front end may set those, never a client."""
    return {k: v for k, v in headers.items() if not k.lower().startswith(PRINCIPAL_PREFIX)}


@web.middleware
async def strip_principals(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Drop client-sent principal headers, Easy Auth on or off (the platform's front end does the same)."""
    # A request without any is passed on as it is: cloning every request cost the host about 1 % of its CPU.
    if any(k.lower().startswith(PRINCIPAL_PREFIX) for k in request.headers):
        request = request.clone(headers=without_principals(request.headers))
    return await handler(request)


class EasyAuthStandIn:
    """Dev-only sign-in that sets the principal headers App Service Authentication sets."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _sign(self, payload: bytes) -> str:
        mac = hmac.new(self._secret, payload, hashlib.sha256).hexdigest()
        return base64.urlsafe_b64encode(payload).decode("ascii") + "." + mac

    def session(self, request: web.Request) -> dict[str, Any] | None:
        """The signed-in principal of the request's cookie, or None."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie or "." not in cookie:
            return None
        encoded, mac = cookie.rsplit(".", 1)
        try:
            payload = base64.urlsafe_b64decode(encoded.encode("ascii"))
        except ValueError:
            return None
        if not hmac.compare_digest(mac, hmac.new(self._secret, payload, hashlib.sha256).hexdigest()):
            return None
        session: dict[str, Any] = json.loads(payload)
        return session

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Drop client-sent principal headers; add the session's, as the platform does."""
        headers = without_principals(request.headers)
        session = self.session(request)
        if session is not None:
            headers["X-MS-CLIENT-PRINCIPAL"] = principal_header(session["name"], session["roles"])
            headers["X-MS-CLIENT-PRINCIPAL-NAME"] = session["name"]
            headers["X-MS-CLIENT-PRINCIPAL-ID"] = session["id"]
            headers["X-MS-CLIENT-PRINCIPAL-IDP"] = "aad"
        return await handler(request.clone(headers=headers))

    def routes(self) -> list[web.RouteDef]:
        """``/.auth/login/dev``, ``/.auth/me`` and ``/.auth/logout``."""
        return [
            web.get("/.auth/login/dev", self.login_form),
            web.post("/.auth/login/dev", self.login),
            web.get("/.auth/me", self.me),
            web.get("/.auth/logout", self.logout),
        ]

    async def login_form(self, request: web.Request) -> web.Response:
        target = html.escape(_local_target(request.query.get("post_login_redirect_uri")))
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Development sign-in</title></head>'
            "<body><main><h1>Development sign-in (local host only)</h1>"
            "<p>This stands in for App Service Authentication. It is never available in Azure.</p>"
            '<form method="post" action="/.auth/login/dev">'
            '<p><label for="name">Name</label> <input id="name" name="name" required value="approver@contoso.com"></p>'
            '<p><label for="roles">App roles (comma-separated)</label> '
            '<input id="roles" name="roles" value="Signup.Approve"></p>'
            f'<input type="hidden" name="post_login_redirect_uri" value="{target}">'
            '<p><button type="submit">Sign in</button></p></form></main></body></html>'
        )
        return web.Response(text=page, content_type="text/html")

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("name") or "").strip()[:200]
        if not name:
            raise web.HTTPBadRequest(text="name is required")
        roles = [r.strip() for r in str(form.get("roles") or "").split(",") if r.strip()][:20]
        session = {"name": name, "id": hashlib.sha256(name.encode("utf-8")).hexdigest()[:32], "roles": roles}
        response = web.HTTPSeeOther(_local_target(str(form.get("post_login_redirect_uri") or "")))
        cookie = self._sign(json.dumps(session).encode("utf-8"))
        response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="Lax", path="/")
        log.info("devhost.easyauth_sign_in roles=%s", ",".join(roles))
        return response

    async def me(self, request: web.Request) -> web.Response:
        session = self.session(request)
        if session is None:
            return web.json_response([], status=401)
        claims = [{"typ": "name", "val": session["name"]}] + [{"typ": "roles", "val": r} for r in session["roles"]]
        return web.json_response([{"provider_name": "aad", "user_id": session["name"], "user_claims": claims}])

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther(_local_target(request.query.get("post_logout_redirect_uri")))
        response.del_cookie(SESSION_COOKIE, path="/")
        return response


def _local_target(uri: str | None) -> str:
    """A redirect target on this host only (never an open redirect)."""
    parts = urlsplit(uri or "/")
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")
