"""Page triggers: the sign-up form, a request's status page, the approver's page and their static files.

The pages are anonymous and hold no data of their own: the approver's page gets
its data from the admin routes (function key or Easy Auth). Every page is sent
with a strict Content-Security-Policy (``shared.pages.render.security_headers``).
"""

from __future__ import annotations

import azure.functions as func

from shared.edge import routes

from .http import ALL_METHODS, serve

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated


@bp.function_name("signup_page")
@bp.route(route="signup", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_signup_page(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/signup: the sign-up form in the requester's language."""
    return await serve(routes.SIGNUP_PAGE, req)


@bp.function_name("signup_status_page")
@bp.route(route="signup/{id}", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_signup_status_page(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/signup/{id}: the status of one request as a page (where a form post without JavaScript lands)."""
    return await serve(routes.STATUS_PAGE, req)


@bp.function_name("manage_page")
@bp.route(route="manage", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_manage_page(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/manage: the approver's page (its data comes from the admin routes, which check the caller)."""
    return await serve(routes.MANAGE_PAGE, req)


@bp.function_name("static_file")
@bp.route(route="static/{name}", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_static(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/static/{name}: the pages' CSS and JavaScript (and the branding stylesheet)."""
    return await serve(routes.STATIC_FILE, req)
