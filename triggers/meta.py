"""The API's own description: ``GET /api/openapi.json``."""

from __future__ import annotations

import azure.functions as func

from shared import problems
from shared.api import description

from .http import json_response, problem_response
from .signups import ALL_METHODS

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated


@bp.function_name("get_openapi")
@bp.route(route="openapi.json", methods=ALL_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/openapi.json: the OpenAPI 3.1 description of every route."""
    if req.method not in {"GET", "HEAD"}:
        return problem_response(problems.method_not_allowed(req.method, "GET"))
    return json_response(200, description())
