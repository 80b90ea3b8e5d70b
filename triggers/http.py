"""Mapping between ``azure.functions`` HTTP objects and the domain's results."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func

from shared.errors import ConfigurationError
from shared.problems import CONTENT_TYPE, Problem, internal_error

log = logging.getLogger(__name__)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A JSON response that is never cached (it reflects live state)."""
    return func.HttpResponse(
        json.dumps(body),
        status_code=status,
        mimetype="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def problem_response(problem: Problem, extra: dict[str, str] | None = None) -> func.HttpResponse:
    """An ``application/problem+json`` response."""
    return func.HttpResponse(
        json.dumps(problem.body),
        status_code=problem.status,
        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store", **problem.headers, **(extra or {})},
    )


async def guarded(handler: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run ``handler``; a failure of ours becomes a 500 problem instead of the host's bare 500."""
    try:
        return await handler()
    except ConfigurationError as exc:
        log.error("http.misconfigured %s", exc)
        return problem_response(internal_error())
    except Exception:
        log.exception("http.unhandled")
        return problem_response(internal_error())
