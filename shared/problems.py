"""RFC 9457 problem details for every error the HTTP API returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from .errors import FormRejected, RequestError, TooManyRequests, ValidationFailed

CONTENT_TYPE: Final = "application/problem+json"


@dataclass(frozen=True)
class Problem:
    """A problem response: status, headers and the JSON body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def problem(status: int, type_uri: str, title: str, detail: str, **extra: Any) -> Problem:
    """A problem with the standard members plus ``extra`` ones."""
    headers = {str(k): str(v) for k, v in extra.pop("headers", {}).items()}
    body = {"type": type_uri, "title": title, "status": status, "detail": detail, **extra}
    return Problem(status, body, headers)


def from_request_error(exc: RequestError) -> Problem:
    """The problem for a refused request (400, 403, 413, 415)."""
    if isinstance(exc, ValidationFailed):
        return problem(exc.status, exc.type_uri, exc.title, exc.detail, errors=exc.errors)
    if isinstance(exc, FormRejected) and exc.reason == "too_fast":
        return problem(exc.status, exc.type_uri, exc.title, exc.detail, reason="too_fast")
    if isinstance(exc, TooManyRequests):
        return problem(exc.status, exc.type_uri, exc.title, exc.detail, headers={"Retry-After": str(exc.retry_after)})
    return problem(exc.status, exc.type_uri, exc.title, exc.detail)


def method_not_allowed(method: str, allowed: str) -> Problem:
    """405 with the ``Allow`` header."""
    return problem(
        405,
        "/problems/method-not-allowed",
        "Method not allowed",
        f"{method} is not allowed here; use {allowed}.",
        headers={"Allow": allowed},
    )


def not_found(what: str) -> Problem:
    """404 for an unknown resource."""
    return problem(404, "/problems/not-found", "Not found", f"There is no {what}.")


def unavailable(retry_after: int = 5, detail: str | None = None) -> Problem:
    """503 with ``Retry-After`` when storage (or the CAPTCHA provider) cannot take the request now."""
    return problem(
        503,
        "/problems/unavailable",
        "Service unavailable",
        detail or "The sign-up could not be stored right now; nothing was accepted. Try again shortly.",
        headers={"Retry-After": str(retry_after)},
    )


def internal_error() -> Problem:
    """500 for failures that are the service's fault (never for bad input)."""
    return problem(
        500,
        "/problems/internal",
        "Internal error",
        "The service could not handle the request; nothing was accepted.",
    )
