"""The sign-up record and its statuses.

A ``Signup`` is what Table storage holds for one request. Its status moves
along one path::

    queued ──► inviting ──► invited
                  │
                  └──────► failed

``inviting`` carries a lease (``lease_until``): the delivery that holds a live
lease is the only one allowed to call Graph for that sign-up.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Where a sign-up stands."""

    QUEUED = "queued"
    INVITING = "inviting"
    INVITED = "invited"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """True for statuses a sign-up never leaves."""
        return self in {Status.INVITED, Status.FAILED}


_ID_BYTES = 16
_SIGNUP_ID = re.compile(rf"^[A-Za-z0-9_-]{{{math.ceil(_ID_BYTES * 4 / 3)}}}$")  # unpadded base64url


def new_signup_id() -> str:
    """An unguessable id: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(_ID_BYTES)


def is_signup_id(value: str) -> bool:
    """True when ``value`` has the shape ``new_signup_id`` produces (checked before any storage call)."""
    return bool(_SIGNUP_ID.match(value))


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 text with a ``Z`` suffix and millisecond precision."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Signup:
    """One sign-up request and everything recorded about its invitation."""

    id: str
    email: str
    display_name: str
    company: str | None
    justification: str | None
    status: Status
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    lease_until: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_detail: str | None = None
    graph_request_id: str | None = None
    invitation_id: str | None = None
    invited_user_id: str | None = None
    invitation_status: str | None = None
    redeem_url: str | None = None
    etag: str | None = None

    def evolve(self, **changes: Any) -> Signup:
        """A copy with ``changes`` applied (``updated_at`` set to now unless given)."""
        changes.setdefault("updated_at", utcnow())
        return replace(self, **changes)

    def public_view(self) -> dict[str, Any]:
        """What an anonymous caller with the id may see: never the email, user id or redeem URL."""
        error = None
        if self.status is Status.FAILED:
            error = {"code": self.error_code, "message": self.error_message}
        return {
            "id": self.id,
            "status": self.status.value,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "error": error,
        }
