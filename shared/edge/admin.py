"""The admin routes' handlers under ``/api/manage/``: list, read, approve, deny, bulk decisions, convert, stats.

Who may call is checked here, per action (``shared.access``); that writes are
JSON and not cross-site is checked before, by the pipeline, for every write.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ..access import Action, Caller, authorise_for
from ..approval.bulk import decide_all, parse_decisions
from ..approval.service import parse_page, parse_reason
from ..conversion import parse_conversion_request
from ..errors import ConfigurationError
from ..lifecycle.models import Status
from ..services import get_services
from ..stats import list_ids, parse_days, parse_list
from .model import Inbound, Json, Outcome


def _caller(request: Inbound, action: Action) -> Caller:
    settings = get_services().settings
    return authorise_for(
        request.headers, action, settings.manage_easy_auth_role, settings.manage_convert_easy_auth_role
    )


async def list_signups(request: Inbound) -> Outcome:
    """GET /api/manage/signups?status=&domain=&profile=&kind=&from=&to=&q=&sort=&pageSize=&continuationToken=.

    Through the day index (``shared.stats.listing``); ``status=received`` (not admitted yet) by the older scan.
    """
    _caller(request, "read")
    query = parse_list(request.params)
    services = get_services()
    if query.status is Status.RECEIVED or services.day_index is None:
        status, size = parse_page(request.params.get("status"), request.params.get("pageSize"))
        return Json(200, await services.approvals.page(status, size, query.token))
    ids, following = await list_ids(services.day_index, query)
    return Json(200, {"items": await services.approvals.views(ids), "continuationToken": following})


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


async def decisions(request: Inbound) -> Outcome:
    """POST /api/manage/decisions: approve or deny up to 100 requests with one reason; a result per id."""
    caller = _caller(request, "approve")
    ids, decision, reason = parse_decisions(request.headers.get("content-type"), request.body)
    return Json(200, await decide_all(get_services().approvals, ids, decision, reason, caller))


async def stats(request: Inbound) -> Outcome:
    """GET /api/manage/stats?days=30: the overview's figures from the day index's summaries."""
    _caller(request, "read")
    days = parse_days(request.params.get("days"))
    overview = get_services().overview
    if overview is None:
        raise ConfigurationError({"day_index": "the services were built without the day index"})
    return Json(200, await overview.stats(days))
