"""What crosses the HTTP edge, without ``azure.functions``: the request, the outcomes, the reply.

A handler reads an ``Inbound`` and computes one outcome; the presenter
(``shared.edge.present``) turns it into a ``Reply``; the trigger maps that to
the host's response object. Only ``triggers/`` knows the Functions types.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..problems import Problem


class Headers(Mapping[str, str]):
    """Request headers, looked up regardless of case (as HTTP field names are)."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items = {str(k).lower(): str(v) for k, v in pairs}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:  # never the values: they may hold keys or principals
        return f"Headers({sorted(self._items)})"


@dataclass(frozen=True)
class Inbound:
    """One HTTP request as the handlers see it."""

    method: str
    url: str
    headers: Headers
    params: Mapping[str, str] = field(default_factory=dict)
    route: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def media_type(self) -> str:
        """The body's media type, lower case, without parameters ('' when not given)."""
        return (self.headers.get("content-type") or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class Reply:
    """What the edge answers: status, headers and body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    mimetype: str | None = None  # instead of a Content-Type header, where the host adds the charset


# -- outcomes: what a handler decided, before anyone chose how to show it ----------------------


@dataclass(frozen=True)
class Json:
    """A result as JSON; ``see_other`` is where a browser's form post goes instead (post/redirect/get)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    see_other: str | None = None


@dataclass(frozen=True)
class Refused:
    """A refusal: problem+json, or for a browser's form post the form again with the reason."""

    problem: Problem


@dataclass(frozen=True)
class Show:
    """A page to show in ``language``; ``view`` carries what that page needs."""

    page: Literal["signup", "status", "manage"]
    language: str
    view: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class File:
    """A static file (the pages' CSS and JavaScript)."""

    body: bytes
    content_type: str


@dataclass(frozen=True)
class Empty:
    """No body (a CORS preflight's 204)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


Outcome = Json | Refused | Show | File | Empty
