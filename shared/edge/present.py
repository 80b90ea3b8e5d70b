"""The one presenter: every outcome becomes a reply here, as JSON, problem+json or a page.

Content negotiation happens in one place (``wants_html``): only a browser's
plain form post to a route that allows it (the sign-up) gets pages; everything
else gets JSON. Page rendering (Jinja2, the catalogues) is imported when a page
is first rendered, never when the app is indexed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

from ..problems import CONTENT_TYPE, Problem
from .model import Empty, File, Inbound, Json, Outcome, Refused, Reply, Show

log = logging.getLogger(__name__)

JSON_HEADERS: Final = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
STATIC_CACHE: Final = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
PROBLEM_TEXTS: Final = {
    "/problems/captcha": "problem_captcha",
    "/problems/forbidden": "problem_403",
    "/problems/too-many-requests": "problem_429",
    "/problems/unavailable": "problem_503",
}


def wants_html(request: Inbound) -> bool:
    """True for a browser's plain form post (it asks for HTML first); API clients keep JSON."""
    accept = (request.headers.get("accept") or "").lower()
    if request.media_type != "application/x-www-form-urlencoded" or "text/html" not in accept:
        return False
    json_at, html_at = accept.find("application/json"), accept.find("text/html")
    return json_at == -1 or html_at < json_at


def problem_reply(problem: Problem, extra: Mapping[str, str] | None = None) -> Reply:
    """An ``application/problem+json`` reply."""
    headers = {"Content-Type": CONTENT_TYPE, **JSON_HEADERS, **problem.headers, **(extra or {})}
    return Reply(problem.status, headers, json.dumps(problem.body).encode("utf-8"))


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON reply that is never cached (it reflects live state)."""
    return Reply(status, {**JSON_HEADERS, **(headers or {})}, json.dumps(body).encode("utf-8"), "application/json")


async def present(outcome: Outcome, request: Inbound, *, page: bool, extra: Mapping[str, str]) -> Reply:
    """``outcome`` as the caller asked for it; ``page``: a browser's form post; ``extra``: CORS headers."""
    if isinstance(outcome, Refused):
        if page and outcome.problem.status != 500:  # our own fault: no form to correct
            try:
                return await _form_again(request, outcome.problem)
            except Exception:  # the refusal still goes out, as problem+json
                log.exception("edge.page_failed")
        return problem_reply(outcome.problem, extra)
    if isinstance(outcome, Json):
        if page and outcome.see_other:
            return Reply(303, {"Location": outcome.see_other})
        return json_reply(outcome.status, outcome.body, {**outcome.headers, **extra})
    if isinstance(outcome, Show):
        return await _show(outcome)
    if isinstance(outcome, File):
        return Reply(200, {**STATIC_CACHE, "Content-Type": outcome.content_type}, outcome.body)
    assert isinstance(outcome, Empty)
    return Reply(outcome.status, dict(outcome.headers))


# -- pages --------------------------------------------------------------------------------------


def _html(body: str, status: int = 200, extra: Mapping[str, str] | None = None) -> Reply:
    """An HTML page with the security headers (a strict CSP, no caching)."""
    from ..pages import security_headers
    from ..pages.views import branding
    from ..services import get_services

    services = get_services()
    headers = {**security_headers(branding(services.settings), services.captcha_origins), **(extra or {})}
    headers["Content-Type"] = "text/html; charset=utf-8"
    headers["Content-Language"] = body.split('lang="', 1)[1].split('"', 1)[0] if 'lang="' in body else "en"
    return Reply(status, headers, body.encode("utf-8"))


async def _show(show: Show) -> Reply:
    from ..pages.views import manage_page, signup_page, status_page
    from ..services import get_services

    services = get_services()
    if show.page == "signup":
        policy = await services.policy.current()
        token = services.issue_form_token()
        body = signup_page(show.language, services.settings, policy, token, captcha=services.captcha_widget)
    elif show.page == "status":
        body = status_page(show.language, services.settings, show.view)
    else:
        policy = await services.policy.current()
        body = manage_page(
            show.language,
            services.settings,
            signed_in=bool(show.view.get("signed_in")),
            focus_id=show.view.get("focus_id"),
            can_approve=bool(show.view.get("can_approve", True)),
            profiles=tuple(profile.name for profile in policy.profiles),
        )
    return _html(body, extra=show.headers)


def _posted(request: Inbound) -> dict[str, str]:
    try:
        values = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}
    values.pop("formToken", None)  # a fresh one goes with the page
    return values


async def _form_again(request: Inbound, problem: Problem) -> Reply:
    """The form again with the values kept: a message next to each refused field, or one summary."""
    from ..pages import negotiate
    from ..pages.views import field_errors, messages, signup_page
    from ..services import get_services

    values = _posted(request)
    services = get_services()
    language = negotiate(request.headers.get("accept-language"), values.get("language"))
    organisation = services.settings.organisation_name
    kind = str(problem.body.get("type", ""))
    if kind == "/problems/validation":
        errors = field_errors(language, organisation, problem.body.get("errors") or {})
        extra: dict[str, str] = {}
    else:
        texts = messages(language, organisation)
        text = texts[PROBLEM_TEXTS.get(kind, "problem_400")]
        if kind == "/problems/form-rejected" and problem.body.get("reason") == "too_fast":
            text = texts["problem_too_fast"]
        errors, extra = {"form": text}, dict(problem.headers)
    page = signup_page(
        language,
        services.settings,
        await services.policy.current(),
        services.issue_form_token(),
        values=values,
        errors=errors,
        captcha=services.captcha_widget,
    )
    return _html(page, problem.status, extra)
