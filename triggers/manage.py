"""Admin triggers under ``/api/manage/``: list, read, approve and deny sign-ups, convert internal users.

Never under ``/api/admin``: the Functions host reserves that prefix and refuses
the function. Function keys guard these routes unless Easy Auth does
(``shared.access``); the auth level is therefore chosen when the app is indexed.
"""

from __future__ import annotations

import azure.functions as func

from shared.access import easy_auth_mode
from shared.edge import routes

from .http import ALL_METHODS, serve

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated

AUTH_LEVEL = func.AuthLevel.ANONYMOUS if easy_auth_mode() else func.AuthLevel.FUNCTION


@bp.function_name("list_signups")
@bp.route(route="manage/signups", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def list_signups(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/manage/signups?status=&pageSize=&continuationToken=: one page of sign-ups."""
    return await serve(routes.LIST_SIGNUPS, req)


@bp.function_name("get_signup_detail")
@bp.route(route="manage/signups/{id}", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def get_signup_detail(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/manage/signups/{id}: the whole request with its history."""
    return await serve(routes.SIGNUP_DETAIL, req)


@bp.function_name("approve_signup")
@bp.route(route="manage/signups/{id}/approve", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def approve_signup(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/manage/signups/{id}/approve with a JSON body, optionally ``{"reason": ...}``."""
    return await serve(routes.APPROVE, req)


@bp.function_name("deny_signup")
@bp.route(route="manage/signups/{id}/deny", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def deny_signup(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/manage/signups/{id}/deny with ``{"reason": ...}``."""
    return await serve(routes.DENY, req)


@bp.function_name("submit_conversion")
@bp.route(route="manage/conversions", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def submit_conversion(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/manage/conversions: convert one internal user to B2B (202 with a status URL)."""
    return await serve(routes.CONVERT, req)


@bp.function_name("get_stats")
@bp.route(route="manage/stats", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def get_stats(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/manage/stats?days=30: counts per status per day, time to invite, failures, budget, attention."""
    return await serve(routes.STATS, req)


@bp.function_name("submit_decisions")
@bp.route(route="manage/decisions", methods=ALL_METHODS, auth_level=AUTH_LEVEL)
async def submit_decisions(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/manage/decisions: approve or deny up to 100 requests with one reason."""
    return await serve(routes.DECISIONS, req)
