"""One way through the edge for every HTTP route: method, CORS, the admin-write rules, the handler,
errors to problems, and the presenter.

A route is declared once (``Route``) with what applies to it; ``respond`` runs
the steps in order, so a rule (CORS, the admin writes' CSRF defence, how a
storage outage is answered) lives in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from .. import problems
from ..abuse import VerificationUnavailable
from ..access.writes import check_admin_write
from ..errors import ConfigurationError, DecisionConflict, RequestError, SignupForbidden, StorageError
from ..services import get_services
from .model import Empty, Inbound, Outcome, Refused, Reply
from .present import present, problem_reply, wants_html

log = logging.getLogger(__name__)

PREFLIGHT_MAX_AGE: Final = "600"
UNVERIFIED: Final = "The verification service could not be reached; nothing was accepted. Try again shortly."


@dataclass(frozen=True)
class Route:
    """One HTTP function: its method, its handler and the rules that apply to it."""

    name: str  # for logs
    method: str  # GET (HEAD too) or POST; any other answers 405
    handler: Callable[[Inbound], Awaitable[Outcome]]
    cors: bool = False  # partner sites on CORS_ALLOWED_ORIGINS may call it (with a preflight)
    form: bool = False  # a browser's plain form post is answered with pages
    admin_write: bool = False  # JSON only, never cross-site (shared.access.writes)


def cors_headers(request: Inbound) -> dict[str, str]:
    """CORS headers for an allowed ``Origin`` (``CORS_ALLOWED_ORIGINS``); none for any other."""
    origin = request.headers.get("origin")
    if not origin or origin.rstrip("/") not in get_services().settings.cors_allowed_origins:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def preflight(cors: Mapping[str, str]) -> Outcome:
    """A CORS preflight: 204 with what may be sent for an allowed origin, 403 problem otherwise."""
    if not cors:
        return Refused(
            problems.problem(403, "/problems/forbidden", "Origin not allowed", "This origin may not post sign-ups.")
        )
    return Empty(
        204,
        {
            **cors,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type, Accept",
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        },
    )


ANSWERED: Final = (RequestError, VerificationUnavailable, StorageError, ConfigurationError)


def refusal(exc: Exception, route: Route) -> Refused:
    """The problem for an error a handler raised (one of ``ANSWERED``); what is not a request's fault is logged."""
    if isinstance(exc, DecisionConflict):
        conflict = problems.from_request_error(exc)
        conflict.body["current"] = exc.current
        return Refused(conflict)
    if isinstance(exc, SignupForbidden):
        log.info("http.intake_forbidden signup_id=%s", exc.signup_id)
    if isinstance(exc, RequestError):
        return Refused(problems.from_request_error(exc))
    if isinstance(exc, VerificationUnavailable):
        return Refused(problems.unavailable(detail=UNVERIFIED))
    if isinstance(exc, StorageError):
        log.warning("http.unavailable route=%s error=%s", route.name, type(exc.__cause__ or exc).__name__)
        return Refused(problems.unavailable())
    log.error("http.misconfigured %s", exc)
    return Refused(problems.internal_error())


async def respond(route: Route, request: Inbound) -> Reply:
    """Run ``route`` for ``request``; never raises (a failure of ours is a 500 problem, not the host's)."""
    page = route.form and request.method == route.method and wants_html(request)
    cors: dict[str, str] = {}
    try:
        if route.cors and request.headers.get("origin"):
            cors = cors_headers(request)
        allowed = {route.method, "HEAD"} if route.method == "GET" else {route.method}
        if route.cors and request.method == "OPTIONS":
            outcome = preflight(cors)
        elif request.method not in allowed:
            outcome = Refused(problems.method_not_allowed(request.method, route.method))
        else:
            if route.admin_write:
                check_admin_write(request.headers, request.url, get_services().settings.portal_public_url)
            outcome = await route.handler(request)
    except ANSWERED as exc:
        outcome = refusal(exc, route)
    except Exception:
        log.exception("http.unhandled route=%s", route.name)
        outcome = Refused(problems.internal_error())
    try:
        return await present(outcome, request, page=page, extra=cors)
    except Exception:
        log.exception("http.unpresentable route=%s", route.name)
        return problem_reply(problems.internal_error())
