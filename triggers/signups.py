"""Sign-up triggers: HTTP intake and status, the invitation queue consumer, its poison queue, the sweeper."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import azure.functions as func

from shared import problems
from shared.abuse import VerificationUnavailable
from shared.errors import RequestError, SignupForbidden, StorageError, ValidationFailed
from shared.lifecycle.queue import decode_message
from shared.lifecycle.validation import parse_submission
from shared.services import get_services

from .forms import cors_headers, form_again, preflight, refused, wants_html
from .http import guarded, json_response, problem_response

log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated

# Every method is routed here so that the wrong one gets a 405 problem, not the host's bare 404.
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@bp.function_name("submit_signup")
@bp.route(route="signups", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def submit_signup(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/signups: check, decide by the policy, record, enqueue; 202 (a browser's form post: a page)."""
    cors = cors_headers(req)
    if req.method == "OPTIONS":
        return preflight(req, cors)
    if req.method != "POST":
        return problem_response(problems.method_not_allowed(req.method, "POST"))
    page = wants_html(req)

    async def handle() -> func.HttpResponse:
        form = None
        try:
            # Bad input is answered before any setting or client is needed.
            form, extras = parse_submission(req.headers.get("Content-Type"), req.get_body())
            services = get_services()
            form = await services.gate.check(form, extras, req.headers)
            signup = await services.intake.submit(form)
        except ValidationFailed as exc:
            if page:
                return await form_again(req, exc.errors)
            return problem_response(problems.from_request_error(exc), cors)
        except SignupForbidden as exc:
            log.info("http.intake_forbidden signup_id=%s", exc.signup_id)
            return await refused(req, page, problems.from_request_error(exc), cors)
        except RequestError as exc:
            return await refused(req, page, problems.from_request_error(exc), cors)
        except VerificationUnavailable:
            detail = "The verification service could not be reached; nothing was accepted. Try again shortly."
            return await refused(req, page, problems.unavailable(detail=detail), cors)
        except StorageError as exc:
            log.warning("http.intake_unavailable error=%s", type(exc.__cause__ or exc).__name__)
            return await refused(req, page, problems.unavailable(), cors)
        parts = urlsplit(req.url)
        location = f"{parts.path.rstrip('/')}/{signup.id}"
        if page:
            # Post/redirect/get: the status page, in the language the form was in.
            language = form.language or "en"
            return func.HttpResponse(status_code=303, headers={"Location": f"/api/signup/{signup.id}?lang={language}"})
        status_url = urlunsplit((parts.scheme, parts.netloc, location, "", ""))
        # Every sign-up is answered by its public face alone (queued, or pending_approval for a review).
        face, _ = signup.public_face(signup.created_at)
        return json_response(
            202,
            {"id": signup.id, "status": face.value, "statusUrl": status_url},
            {"Location": location, **cors},
        )

    return await guarded(handle)


@bp.function_name("get_signup")
@bp.route(route="signups/{id}", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_signup(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/signups/{id}: the anonymous status view."""
    if req.method not in {"GET", "HEAD"}:
        return problem_response(problems.method_not_allowed(req.method, "GET"))

    async def handle() -> func.HttpResponse:
        try:
            view = await get_services().intake.public_status(req.route_params.get("id", ""))
        except StorageError:
            return problem_response(problems.unavailable())
        if view is None:
            return problem_response(problems.not_found("sign-up with that id"))
        return json_response(200, view)

    return await guarded(handle)


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
    await get_services().sweeper.sweep()
