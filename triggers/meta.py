"""The API's own description: ``GET /api/openapi.json``."""

from __future__ import annotations

import azure.functions as func

from shared.edge import routes

from .http import ALL_METHODS, serve

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated


@bp.function_name("get_openapi")
@bp.route(route="openapi.json", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/openapi.json: the OpenAPI 3.1 description of every route."""
    return await serve(routes.OPENAPI, req)
