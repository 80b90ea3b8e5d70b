"""The guest lifecycle's manage routes: the Reviews tab's list and decisions, the blocked and deleted lists, restore.

Who may call is checked here as for the other manage routes (``shared.access``: reading needs the read
right, a decision or a restore the approve right); that writes are JSON and not cross-site is checked
before, by the pipeline (``admin_write=True``).
"""

from __future__ import annotations

from ..access import Action, Caller, authorise_for
from ..errors import ConfigurationError
from ..guests import GuestAdmin
from ..guests.reviews import parse_decisions, parse_page_size, parse_state
from ..services import get_services
from .model import Inbound, Json, Outcome


def _admin(request: Inbound, action: Action) -> tuple[GuestAdmin, Caller]:
    services = get_services()
    settings = services.settings
    caller = authorise_for(
        request.headers, action, settings.manage_easy_auth_role, settings.manage_convert_easy_auth_role
    )
    if services.guest_admin is None:
        raise ConfigurationError({"guest_admin": "the guest lifecycle is not built"})
    return services.guest_admin, caller


async def list_reviews(request: Inbound) -> Outcome:
    """GET /api/manage/reviews?pageSize=&continuationToken=: one page of the guests awaiting review."""
    admin, _ = _admin(request, "read")
    size = parse_page_size(request.params.get("pageSize"))
    return Json(200, await admin.reviews(size, request.params.get("continuationToken")))


async def decide_reviews(request: Inbound) -> Outcome:
    """POST /api/manage/reviews/decisions ``{"userIds": [...], "decision": "keep"|"remove", "reason"?}``."""
    admin, caller = _admin(request, "approve")
    user_ids, decision, reason = parse_decisions(request.headers.get("content-type"), request.body)
    return Json(200, await admin.decide(user_ids, decision, caller.name, reason))


async def list_guests(request: Inbound) -> Outcome:
    """GET /api/manage/guests?state=blocked|deleted&pageSize=&continuationToken=: one page, with restorableUntil."""
    admin, _ = _admin(request, "read")
    state = parse_state(request.params.get("state"))
    size = parse_page_size(request.params.get("pageSize"))
    return Json(200, await admin.in_state(state, size, request.params.get("continuationToken")))


async def restore_guest(request: Inbound) -> Outcome:
    """POST /api/manage/guests/{userId}/restore: enable a blocked guest, or restore a deleted one (409 past 30 days)."""
    admin, caller = _admin(request, "approve")
    return Json(200, await admin.restore(request.route.get("userId", ""), caller.name))
