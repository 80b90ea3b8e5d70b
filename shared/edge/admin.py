"""The admin routes' handlers under ``/api/manage/``: list, read, approve, deny, convert.

Who may call is checked here, per action (``shared.access``); that writes are
JSON and not cross-site is checked before, by the pipeline, for every write.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ..access import Action, Caller, authorise_for
from ..approval.service import parse_page, parse_reason
from ..conversion import parse_conversion_request
from ..services import get_services
from .model import Inbound, Json, Outcome


def _caller(request: Inbound, action: Action) -> Caller:
    settings = get_services().settings
    return authorise_for(
        request.headers, action, settings.manage_easy_auth_role, settings.manage_convert_easy_auth_role
    )


async def list_signups(request: Inbound) -> Outcome:
    """GET /api/manage/signups?status=&pageSize=&continuationToken=: one page of sign-ups."""
    _caller(request, "read")
    status, size = parse_page(request.params.get("status"), request.params.get("pageSize"))
    return Json(200, await get_services().approvals.page(status, size, request.params.get("continuationToken")))


async def signup_detail(request: Inbound) -> Outcome:
    """GET /api/manage/signups/{id}: the whole request with its history."""
    _caller(request, "read")
    return Json(200, await get_services().approvals.detail(request.route.get("id", "")))


async def approve(request: Inbound) -> Outcome:
    """POST /api/manage/signups/{id}/approve, optionally with ``{"reason": ...}``."""
    caller = _caller(request, "approve")
    reason = parse_reason(request.headers.get("content-type"), request.body, required=False)
    return Json(200, await get_services().approvals.approve(request.route.get("id", ""), caller, reason))


async def deny(request: Inbound) -> Outcome:
    """POST /api/manage/signups/{id}/deny with ``{"reason": ...}``."""
    caller = _caller(request, "approve")
    reason = parse_reason(request.headers.get("content-type"), request.body, required=True)
    assert reason is not None
    return Json(200, await get_services().approvals.deny(request.route.get("id", ""), caller, reason))


async def convert(request: Inbound) -> Outcome:
    """POST /api/manage/conversions: convert one internal user to B2B (202 with a status URL)."""
    caller = _caller(request, "convert")
    reference, email, options = parse_conversion_request(request.headers.get("content-type"), request.body)
    signup = await get_services().conversions.submit(reference, email, options, caller)
    parts = urlsplit(request.url)
    location = f"{parts.path.rsplit('/', 1)[0]}/signups/{signup.id}"
    status_url = urlunsplit((parts.scheme, parts.netloc, location, "", ""))
    body = {"id": signup.id, "status": signup.status.value, "statusUrl": status_url}
    return Json(202, body, {"Location": location})
