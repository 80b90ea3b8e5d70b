"""Sign-up triggers: HTTP intake and status, the invitation queue consumer, its poison queue, the sweeper."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.edge import routes
from shared.lifecycle.queue import decode_message
from shared.services import get_services

from .http import ALL_METHODS, serve

log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated


@bp.function_name("submit_signup")
@bp.route(route="signups", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def submit_signup(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/signups: check, decide by the policy, record, enqueue; 202 (a browser's form post: a page)."""
    return await serve(routes.SUBMIT_SIGNUP, req)


@bp.function_name("get_signup")
@bp.route(route="signups/{id}", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_signup(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/signups/{id}: the anonymous status view."""
    return await serve(routes.GET_SIGNUP, req)


def _signup_id(msg: func.QueueMessage) -> str | None:
    try:
        return decode_message(msg.get_body().decode("utf-8"))
    except ValueError:
        # Not ours (or corrupted): nothing to record it against, so drop it, loudly.
        log.error("queue.malformed_message message_id=%s", msg.id)
        return None


@bp.function_name("invite_signup")
@bp.queue_trigger(arg_name="msg", queue_name="%SIGNUP_QUEUE%", connection="AzureWebJobsStorage")
async def invite_signup(msg: func.QueueMessage) -> None:
    """Queue consumer: one delivery of the invitation state machine (raises only when storage fails)."""
    signup_id = _signup_id(msg)
    if signup_id is None:
        return
    await get_services().worker.process(signup_id)


@bp.function_name("finalise_poisoned_signup")
@bp.queue_trigger(arg_name="msg", queue_name="%SIGNUP_QUEUE%-poison", connection="AzureWebJobsStorage")
async def finalise_poisoned_signup(msg: func.QueueMessage) -> None:
    """Poison-queue consumer: re-enqueue what can still finish, fail the rest; never raises."""
    signup_id = _signup_id(msg)
    if signup_id is not None:
        await get_services().worker.finalise_poisoned(signup_id)


@bp.function_name("sweep_signups")
@bp.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def sweep_signups(timer: func.TimerRequest) -> None:
    """Timer: set going again what a lost message, a dead worker or a missed retry left behind."""
    if timer.past_due:
        log.info("sweeper.past_due")
    services = get_services()
    await services.sweeper.sweep()
    if services.overview is not None:  # the graph.budget.used / graph.budget.limit gauges, once a sweep
        await services.overview.publish_budget()
