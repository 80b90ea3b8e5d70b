"""The sign-up endpoint's browser side: CORS for partner sites, and pages for form posts without JavaScript."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

import azure.functions as func

from shared import problems
from shared.pages import negotiate
from shared.pages.views import field_errors, messages, signup_page
from shared.problems import Problem
from shared.services import get_services

from .http import problem_response

PREFLIGHT_MAX_AGE = "600"


def cors_headers(req: func.HttpRequest) -> dict[str, str]:
    """CORS headers for an allowed ``Origin`` (``CORS_ALLOWED_ORIGINS``); none for any other."""
    origin = req.headers.get("Origin")
    if not origin or origin.rstrip("/") not in get_services().settings.cors_allowed_origins:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def preflight(req: func.HttpRequest, cors: Mapping[str, str]) -> func.HttpResponse:
    """Answer a CORS preflight: 204 with what may be sent for an allowed origin, 403 problem otherwise."""
    if not cors:
        return problem_response(
            problems.problem(403, "/problems/forbidden", "Origin not allowed", "This origin may not post sign-ups.")
        )
    headers = {
        **cors,
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "Content-Type, Accept",
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
    }
    return func.HttpResponse(status_code=204, headers=headers)


def wants_html(req: func.HttpRequest) -> bool:
    """True for a browser's plain form post (it asks for HTML first); API clients keep JSON."""
    accept = (req.headers.get("Accept") or "").lower()
    form = (req.headers.get("Content-Type") or "").lower().startswith("application/x-www-form-urlencoded")
    if not form or "text/html" not in accept:
        return False
    json_at, html_at = accept.find("application/json"), accept.find("text/html")
    return json_at == -1 or html_at < json_at


def _posted(req: func.HttpRequest) -> dict[str, str]:
    try:
        return dict(parse_qsl(req.get_body().decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


async def form_again(req: func.HttpRequest, api_errors: Mapping[str, list[str]]) -> func.HttpResponse:
    """The form again, with the values kept and a localised message next to each refused field (400)."""
    from .pages import html

    values = _posted(req)
    values.pop("formToken", None)
    services = get_services()
    language = negotiate(req.headers.get("Accept-Language"), values.get("language"))
    errors = field_errors(language, services.settings.organisation_name, api_errors)
    page = signup_page(
        language,
        services.settings,
        await services.policy.current(),
        services.issue_form_token(),
        values=values,
        errors=errors,
        captcha=services.captcha_widget,
    )
    return html(page, 400)


async def refused(req: func.HttpRequest, page: bool, problem: Problem, cors: Mapping[str, str]) -> func.HttpResponse:
    """A refusal: problem+json for API clients; for a browser's form post, the form with a summary."""
    if not page:
        return problem_response(problem, dict(cors))
    from .pages import html

    values = _posted(req)
    values.pop("formToken", None)
    services = get_services()
    language = negotiate(req.headers.get("Accept-Language"), values.get("language"))
    texts = messages(language, services.settings.organisation_name)
    kind = str(problem.body.get("type", ""))
    text = {
        "/problems/captcha": texts["problem_captcha"],
        "/problems/forbidden": texts["problem_403"],
        "/problems/too-many-requests": texts["problem_429"],
        "/problems/unavailable": texts["problem_503"],
    }.get(kind, texts["problem_400"])
    if kind == "/problems/form-rejected" and "too_fast" in str(problem.body.get("reason", "")):
        text = texts["problem_too_fast"]
    page_html = signup_page(
        language,
        services.settings,
        await services.policy.current(),
        services.issue_form_token(),
        values=values,
        errors={"form": text},
        captcha=services.captcha_widget,
    )
    return html(page_html, problem.status, {k: v for k, v in problem.headers.items()})
