"""Guest lifecycle triggers: the guest sweep's timer, the Reviews tab's routes, the blocked and deleted lists, restore.

The timer binds ``%GUEST_SWEEP_SCHEDULE%`` when the app setting exists (the template always sets it);
a host without it runs the sweep on the default schedule, as ``Settings`` would. The sweep does nothing
while no policy profile has lifecycle rules.
"""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared.access import easy_auth_mode
from shared.edge import routes
from shared.services import get_services

from .http import ALL_METHODS, serve

log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated

# As the other manage routes (triggers/manage.py): function keys unless Easy Auth guards them.
AUTH_LEVEL = func.AuthLevel.ANONYMOUS if easy_auth_mode() else func.AuthLevel.FUNCTION

SCHEDULE = "%GUEST_SWEEP_SCHEDULE%" if os.environ.get("GUEST_SWEEP_SCHEDULE") else "0 30 * * * *"
# One run's share of the due guests; the rest wait for the next run (a timer invocation has a time limit).
MAX_GUESTS_PER_RUN = 2000


@bp.function_name("guest_sweep")
@bp.timer_trigger(arg_name="timer", schedule=SCHEDULE, run_on_startup=False, use_monitor=True)
async def guest_sweep(timer: func.TimerRequest) -> None:
    """Timer: remind, review, block and delete the registered guests that are due (idle without lifecycle rules)."""
    if timer.past_due:
        log.info("guests.sweep_past_due")
    sweep = get_services().guest_sweep
    if sweep is not None:
        await sweep.sweep(max_guests=MAX_GUESTS_PER_RUN)


@bp.function_name("list_reviews")
@bp.route(route="manage/reviews", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def list_reviews(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/manage/reviews?pageSize=&continuationToken=: the guests awaiting review."""
    return await serve(routes.LIST_REVIEWS, req)


@bp.function_name("decide_reviews")
@bp.route(route="manage/reviews/decisions", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def decide_reviews(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/manage/reviews/decisions: keep or remove up to 100 guests."""
    return await serve(routes.DECIDE_REVIEWS, req)


@bp.function_name("list_guests")
@bp.route(route="manage/guests", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def list_guests(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/manage/guests?state=blocked|deleted: the guests the portal blocked or deleted."""
    return await serve(routes.LIST_GUESTS, req)


@bp.function_name("restore_guest")
@bp.route(route="manage/guests/{userId}/restore", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def restore_guest(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/manage/guests/{userId}/restore: enable a blocked guest or restore a deleted one."""
    return await serve(routes.RESTORE_GUEST, req)
