"""Admin triggers under ``/api/manage/``: list, read, approve and deny sign-ups.

Never under ``/api/admin``: the Functions host reserves that prefix and refuses
the function. Function keys guard these routes unless Easy Auth does
(``shared.access``); the auth level is therefore chosen when the app is indexed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import azure.functions as func

from shared import problems
from shared.access import Caller, authorise, easy_auth_mode
from shared.approval.service import parse_page, parse_reason
from shared.conversion import parse_conversion_request
from shared.errors import DecisionConflict, RequestError, StorageError
from shared.services import get_services

from .http import guarded, json_response, problem_response
from .signups import ALL_METHODS

log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated

AUTH_LEVEL = func.AuthLevel.ANONYMOUS if easy_auth_mode() else func.AuthLevel.FUNCTION


async def _manage(
    req: func.HttpRequest, allowed: str, action: Callable[[Caller], Awaitable[dict[str, Any]]]
) -> func.HttpResponse:
    """Check the method and the caller, run ``action``, map its errors to problems."""
    if req.method not in {allowed, "HEAD" if allowed == "GET" else allowed}:
        return problem_response(problems.method_not_allowed(req.method, allowed))

    async def handle() -> func.HttpResponse:
        try:
            services = get_services()
            caller = authorise(req.headers, services.settings.manage_easy_auth_role)
            body = await action(caller)
        except DecisionConflict as exc:
            conflict = problems.from_request_error(exc)
            conflict.body["current"] = exc.current
            return problem_response(conflict)
        except RequestError as exc:
            return problem_response(problems.from_request_error(exc))
        except StorageError as exc:
            log.warning("http.manage_unavailable error=%s", type(exc.__cause__ or exc).__name__)
            return problem_response(problems.unavailable())
        return json_response(200, body)

    return await guarded(handle)


@bp.function_name("list_signups")
@bp.route(route="manage/signups", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def list_signups(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/manage/signups?status=&pageSize=&continuationToken=: one page of sign-ups."""

    async def action(_: Caller) -> dict[str, Any]:
        status, size = parse_page(req.params.get("status"), req.params.get("pageSize"))
        return await get_services().approvals.page(status, size, req.params.get("continuationToken"))

    return await _manage(req, "GET", action)


@bp.function_name("get_signup_detail")
@bp.route(route="manage/signups/{id}", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def get_signup_detail(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/manage/signups/{id}: the whole request with its history."""

    async def action(_: Caller) -> dict[str, Any]:
        return await get_services().approvals.detail(req.route_params.get("id", ""))

    return await _manage(req, "GET", action)


@bp.function_name("approve_signup")
@bp.route(route="manage/signups/{id}/approve", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def approve_signup(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/manage/signups/{id}/approve, optionally with ``{"reason": ...}``."""

    async def action(caller: Caller) -> dict[str, Any]:
        reason = parse_reason(req.headers.get("Content-Type"), req.get_body(), required=False)
        return await get_services().approvals.approve(req.route_params.get("id", ""), caller, reason)

    return await _manage(req, "POST", action)


@bp.function_name("deny_signup")
@bp.route(route="manage/signups/{id}/deny", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def deny_signup(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/manage/signups/{id}/deny with ``{"reason": ...}``."""

    async def action(caller: Caller) -> dict[str, Any]:
        reason = parse_reason(req.headers.get("Content-Type"), req.get_body(), required=True)
        assert reason is not None
        return await get_services().approvals.deny(req.route_params.get("id", ""), caller, reason)

    return await _manage(req, "POST", action)


@bp.function_name("submit_conversion")
@bp.route(route="manage/conversions", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def submit_conversion(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/manage/conversions: convert one internal user to B2B (202 with a status URL)."""
    if req.method != "POST":
        return problem_response(problems.method_not_allowed(req.method, "POST"))

    async def handle() -> func.HttpResponse:
        try:
            services = get_services()
            caller = authorise(req.headers, services.settings.manage_easy_auth_role)
            reference, email, options = parse_conversion_request(req.headers.get("Content-Type"), req.get_body())
            signup = await services.conversions.submit(reference, email, options, caller)
        except RequestError as exc:
            return problem_response(problems.from_request_error(exc))
        except StorageError as exc:
            log.warning("http.conversion_unavailable error=%s", type(exc.__cause__ or exc).__name__)
            return problem_response(problems.unavailable())
        parts = urlsplit(req.url)
        location = f"{parts.path.rsplit('/', 1)[0]}/signups/{signup.id}"
        status_url = urlunsplit((parts.scheme, parts.netloc, location, "", ""))
        return json_response(
            202, {"id": signup.id, "status": signup.status.value, "statusUrl": status_url}, {"Location": location}
        )

    return await guarded(handle)
