"""The sign-up record, its statuses and the lifecycle's timers.

A ``Signup`` is what Table storage holds for one request. Intake asks the
policy first (``shared.policy``): a blocked domain, or an unknown one under
``defaultAction: deny``, is recorded ``denied`` and answered 403; one that needs
review is recorded ``pending_approval`` and waits (the worker does nothing with
it; approval, a later step, admits it as ``queued``, and one left too long ends
``expired``). An approved one moves along these paths::

    denied             (refused by the policy at intake; final, never queued)
    pending_approval ──(approved)──► queued       ──(not decided in time)──► expired

               ┌───────────── lease expired / rescheduled ─────────────┐
               ▼                                                       │
    queued ──► inviting ──► invited                                    │
      │           │  └────► failed  (Graph refused; a member's address;│
      │           │                  deadline passed; given up)        │
      │           └───────► retrying ──(due)───────────────────────────┘
      │
      └─ linked   (same address pending or invited within the repeat window:
                   no invitation of its own, its public status is the earlier one's)

``inviting`` carries a lease (``lease_until``): only the delivery holding a live
lease calls Graph. ``due_at`` says when a non-final sign-up next needs work
(queued: the grace after which its message counts as lost; inviting: the lease's
end; retrying: the next attempt); ``deadline`` ends the retrying.

``maybe_invited`` is set before every invitation POST and cleared only when the
attempt proved Graph did not act: after a crash, a lost answer or a failed
write of the outcome it stays set, and the next attempt reads the directory
before it writes again. ``directory_before`` records what the directory held
for the address before the first attempt, so an existing guest is never
mistaken for our own work.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final


class Status(StrEnum):
    """Where a sign-up stands (``shared.lifecycle.transitions`` declares how it moves)."""

    RECEIVED = "received"  # recorded by intake; admission (claim, review or queue) not done yet
    QUEUED = "queued"
    INVITING = "inviting"
    RETRYING = "retrying"
    INVITED = "invited"
    FAILED = "failed"
    LINKED = "linked"
    PENDING_APPROVAL = "pending_approval"
    DENIED = "denied"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # may have invited, and Graph stayed unreadable past the doubt cap; holds the address

    @property
    def terminal(self) -> bool:
        """True for statuses the worker never acts on again (a linked one follows another)."""
        return self in {Status.INVITED, Status.FAILED, Status.LINKED, Status.DENIED, Status.EXPIRED, Status.UNKNOWN}


# Failures that reveal a directory fact (the address is a member's, or in the tenant's own domains): the
# anonymous view shows them as a completed request, so nobody learns who is in the directory by signing up.
DIRECTORY_FACT_CODES: Final = frozenset({"ExistingMember", "TenantDomain"})
REMEMBERED_DENIAL: Final = "denied-before"


class Step(StrEnum):
    """Where one side effect after a decision stands: a mail, or one group membership.

    A mail is marked ``sending`` before the Graph call and never sent again from
    ``sending`` or ``unknown``: at most one mail, as for Microsoft's invitation mail.
    """

    DUE = "due"
    SENDING = "sending"  # the call may be under way (or died with its worker)
    DONE = "done"
    UNKNOWN = "unknown"  # the answer was lost: it may have gone; never retried
    FAILED = "failed"

    @property
    def open(self) -> bool:
        """True while the worker still has this step to do."""
        return self is Step.DUE


class DirectoryBefore(StrEnum):
    """What the directory held for the address before the first invitation attempt."""

    ABSENT = "absent"
    GUEST_PENDING = "guest_pending"  # a guest who has not redeemed an invitation yet
    GUEST_ACCEPTED = "guest_accepted"
    MEMBER = "member"


_ID_BYTES = 16
_RANDOM = math.ceil(_ID_BYTES * 4 / 3)  # unpadded base64url
# The minute it was received (UTC, as the due index writes minutes), then 128 random bits. Ids of the
# older shape (the random part alone) are still read.
_SIGNUP_ID = re.compile(rf"^(\d{{12}})?[A-Za-z0-9_-]{{{_RANDOM}}}$")
ID_MINUTE_FORMAT: Final = "%Y%m%d%H%M"


def new_signup_id(now: datetime | None = None) -> str:
    """An unguessable id that begins with the minute it was received: the record is its own first due entry."""
    return (now or utcnow()).astimezone(UTC).strftime(ID_MINUTE_FORMAT) + secrets.token_urlsafe(_ID_BYTES)


def new_write_token() -> str:
    """A token naming one write, so a writer can recognise its own write after a reported conflict."""
    return secrets.token_urlsafe(9)


def id_minute(signup_id: str) -> datetime | None:
    """The minute a sign-up id names (None for an id of the older, random-only shape)."""
    match = _SIGNUP_ID.match(signup_id)
    if match is None or match.group(1) is None:
        return None
    return datetime.strptime(match.group(1), ID_MINUTE_FORMAT).replace(tzinfo=UTC)


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
    deadline: datetime
    due_at: datetime | None = None
    attempts: int = 0
    lease_until: datetime | None = None
    maybe_invited: bool = False
    directory_before: DirectoryBefore | None = None
    existing_user_id: str | None = None
    linked_to: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_detail: str | None = None
    graph_request_id: str | None = None
    invitation_id: str | None = None
    invited_user_id: str | None = None
    invitation_status: str | None = None
    invitation_mailed: bool | None = None
    redeem_url: str | None = None
    invited_at: datetime | None = None
    faults: int = 0
    policy_profile: str | None = None  # the matched profile's name: the worker invites with its options
    policy_action: str | None = None  # what the policy decided at intake: approve, review or deny
    policy_reason: str | None = None  # why: blocked, profile or default (for admins; never shown publicly)
    language: str | None = None  # the requester's language (BCP 47): the invitation's and the mail's
    answers: dict[str, str] = field(default_factory=dict)  # answers to the profile's questions, by question id
    terms_version: str | None = None  # the terms of use the requester accepted
    decided_by: str | None = None  # the approver (or "function-key") who approved or denied it
    decided_at: datetime | None = None
    decision_reason: str | None = None  # the approver's words, for colleagues: never shown publicly
    approver_mail: Step | None = None  # the mail to the profile's approvers, for a pending request
    org_mail: Step | None = None  # the organisation's own invitation mail, when the profile has a template
    groups: dict[str, str] = field(default_factory=dict)  # group id -> Step value, or "failed:<code>"
    followup_attempts: int = 0  # retries of the steps after the invitation (groups, the mail)
    # A conversion of an internal user (shared.conversion): {"user": id or UPN, "email", and the options}.
    conversion: dict[str, Any] | None = None
    trace_parent: str | None = None  # the W3C traceparent of intake's span: every delivery continues that trace
    last_attempt_at: datetime | None = None  # when the last POST was claimed (the doubt's settling time counts from it)
    write_token: str | None = None
    etag: str | None = None
    origin: Status | None = None  # the status as read from storage (None: not stored yet); the store checks edges

    @property
    def domain(self) -> str:
        """The address's domain (safe to log; the address is not)."""
        return self.email.rsplit("@", 1)[-1]

    @property
    def groups_open(self) -> list[str]:
        """Groups the guest still has to be added to."""
        return [group for group, state in self.groups.items() if state == Step.DUE.value]

    @property
    def follow_up_open(self) -> bool:
        """True while an invited sign-up still has groups to join or the organisation's mail to send."""
        return self.status is Status.INVITED and (bool(self.groups_open) or (self.org_mail or Step.DONE).open)

    def evolve(self, **changes: Any) -> Signup:
        """A copy with ``changes`` applied (``updated_at`` set to now unless given)."""
        changes.setdefault("updated_at", utcnow())
        return replace(self, **changes)

    def public_face(self, now: datetime, owner: Signup | None = None) -> tuple[Status, bool]:
        """The status an anonymous requester sees, and whether to show the error.

        It depends only on what this requester did and what was decided about this request: a
        member's address looks completed, a remembered denial looks like a review that expires, and
        a linked request shows its own progress (``owner``'s outcome only once it is final).
        """
        own_waiting = Status.PENDING_APPROVAL if self.policy_action == "review" else Status.QUEUED
        if self.status is Status.RECEIVED:
            return own_waiting, False
        if self.status is Status.FAILED and self.error_code in DIRECTORY_FACT_CODES:
            return Status.INVITED, False
        if self.status is Status.DENIED and self.policy_reason == REMEMBERED_DENIAL:
            return (Status.PENDING_APPROVAL if now < self.deadline else Status.EXPIRED), False
        if self.status is Status.LINKED:
            if owner is not None and owner.status in {Status.INVITED, Status.UNKNOWN}:
                return owner.status, False
            if owner is not None and owner.status is Status.FAILED and owner.error_code in DIRECTORY_FACT_CODES:
                return Status.INVITED, False
            if self.policy_action == "review" and now >= self.deadline:
                return Status.EXPIRED, False
            return own_waiting, False
        return self.status, self.status in {Status.FAILED, Status.UNKNOWN}

    def public_view(self, now: datetime | None = None, owner: Signup | None = None) -> dict[str, Any]:
        """What an anonymous caller with the id may see: never the email, user id, redeem URL, a policy
        reason, or anything about the directory or another request (``public_face``)."""
        face, show_error = self.public_face(now or utcnow(), owner)
        error = {"code": self.error_code, "message": self.error_message} if show_error else None
        return {
            "id": self.id,
            "status": face.value,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at if face is self.status else self.created_at),
            "nextAttemptAt": iso(self.due_at) if face is Status.RETRYING and self.due_at else None,
            "error": error,
        }
