"""Page triggers: the sign-up form, a request's status page, the approver's page and their static files.

The pages are anonymous and hold no data of their own: the approver's page gets
its data from the admin routes (function key or Easy Auth). Every page is sent
with a strict Content-Security-Policy (``shared.pages.render.security_headers``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import azure.functions as func

from shared import problems
from shared.errors import StorageError
from shared.pages import negotiate, security_headers
from shared.pages.render import STATIC
from shared.pages.views import brand_css, branding, manage_page, signup_page, status_page
from shared.services import get_services

from .http import guarded, problem_response
from .signups import ALL_METHODS

log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated

STATIC_TYPES: Final = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
STATIC_FILES: Final = frozenset({"site.css", "signup.js", "status.js", "manage.js"})


def html(body: str, status: int = 200, extra: dict[str, str] | None = None) -> func.HttpResponse:
    """An HTML page with the security headers."""
    settings = get_services().settings
    captcha_origins = get_services().captcha_origins
    headers = {**security_headers(branding(settings), captcha_origins), **(extra or {})}
    headers["Content-Type"] = "text/html; charset=utf-8"
    headers["Content-Language"] = body.split('lang="', 1)[1].split('"', 1)[0] if 'lang="' in body else "en"
    return func.HttpResponse(body, status_code=status, headers=headers)


def language_of(req: func.HttpRequest) -> str:
    """The page language: ``?lang=``, else ``Accept-Language``, else English."""
    return negotiate(req.headers.get("Accept-Language"), req.params.get("lang"))


@bp.function_name("signup_page")
@bp.route(route="signup", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_signup_page(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/signup: the sign-up form in the requester's language."""
    if req.method not in {"GET", "HEAD"}:
        return problem_response(problems.method_not_allowed(req.method, "GET"))

    async def handle() -> func.HttpResponse:
        services = get_services()
        policy = await services.policy.current()
        language = language_of(req)
        page = signup_page(
            language, services.settings, policy, services.issue_form_token(), captcha=services.captcha_widget
        )
        return html(page, extra={"Vary": "Accept-Language"})

    return await guarded(handle)


@bp.function_name("signup_status_page")
@bp.route(route="signup/{id}", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_signup_status_page(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/signup/{id}: the status of one request as a page (where a form post without JavaScript lands)."""
    if req.method not in {"GET", "HEAD"}:
        return problem_response(problems.method_not_allowed(req.method, "GET"))

    async def handle() -> func.HttpResponse:
        services = get_services()
        try:
            view = await services.intake.public_status(req.route_params.get("id", ""))
        except StorageError:
            return problem_response(problems.unavailable())
        if view is None:
            return problem_response(problems.not_found("sign-up with that id"))
        return html(status_page(language_of(req), services.settings, view))

    return await guarded(handle)


@bp.function_name("manage_page")
@bp.route(route="manage", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_manage_page(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/manage: the approver's page (its data comes from the admin routes, which check the caller)."""
    if req.method not in {"GET", "HEAD"}:
        return problem_response(problems.method_not_allowed(req.method, "GET"))

    async def handle() -> func.HttpResponse:
        settings = get_services().settings
        signed_in = bool(settings.manage_easy_auth_role) and bool(req.headers.get("X-MS-CLIENT-PRINCIPAL"))
        page = manage_page(language_of(req), settings, signed_in=signed_in, focus_id=req.params.get("id"))
        return html(page)

    return await guarded(handle)


@bp.function_name("static_file")
@bp.route(route="static/{name}", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
def get_static(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/static/{name}: the pages' CSS and JavaScript (and the branding stylesheet)."""
    if req.method not in {"GET", "HEAD"}:
        return problem_response(problems.method_not_allowed(req.method, "GET"))
    name = req.route_params.get("name", "")
    cache = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
    if name == "brand.css":
        css = brand_css(get_services().settings)
        return func.HttpResponse(css, headers={**cache, "Content-Type": STATIC_TYPES[".css"]})
    if name not in STATIC_FILES:
        return problem_response(problems.not_found("such file"))
    path = STATIC / name
    return func.HttpResponse(path.read_bytes(), headers={**cache, "Content-Type": STATIC_TYPES[Path(name).suffix]})
