"""Approve and deny: conditional, idempotent, recorded.

An approval or denial is one ETag-conditional write of the sign-up record from
``pending_approval`` to its outcome. Two approvers racing: one write lands, the
other re-reads and finds the request decided. Asking again for the outcome that
was recorded answers 200 with ``result: already_decided`` (and finishes any step
the first call left undone); asking for the other outcome, or deciding a
request that is no longer pending, raises ``DecisionConflict`` (409).

Approving goes through the lifecycle's admission (``Admission.approve``): the
due-index entry, the address claim re-asserted in the same conditional step (or
a link to the address's current owner), then the queue; a crash between the
steps leaves work the sweeper finds. Denying
remembers the address (``DenialMemory``) so that it is refused at intake without
a new review until the memory lapses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from ..access import Caller
from ..audit import AuditEntry, AuditLog
from ..errors import ConcurrencyConflict, DecisionConflict, StorageError, UnknownSignup, ValidationFailed
from ..lifecycle.admission import Admission
from ..lifecycle.models import Signup, Status, is_signup_id, utcnow
from ..lifecycle.store import DueEntry, DueIndex, SignupStore, bucket_of
from ..lifecycle.timers import Timers
from ..lifecycle.transitions import Event
from ..lifecycle.writes import write
from .denials import DenialMemory
from .views import admin_view

log = logging.getLogger(__name__)

MAX_REASON: Final = 500
MAX_PAGE: Final = 100
DEFAULT_PAGE: Final = 50
MAX_ROUNDS: Final = 5


def parse_reason(content_type: str | None, body: bytes, *, required: bool) -> str | None:
    """The decision's reason from a JSON body ``{"reason": "..."}`` (an empty body when not required)."""
    if not body.strip():
        if required:
            raise ValidationFailed({"reason": ["A reason is required."]})
        return None
    if (content_type or "").split(";")[0].strip().lower() not in {"application/json", ""}:
        raise ValidationFailed({"body": ['Send JSON: {"reason": "..."}.']})
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed({"body": ["The body is not valid JSON."]}) from None
    if not isinstance(data, dict) or set(data) - {"reason"}:
        raise ValidationFailed({"body": ["Send an object with one member, reason."]})
    reason = data.get("reason")
    if reason is None and not required:
        return None
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed({"reason": ["A reason is required." if required else "The reason must be text."]})
    reason = reason.strip()
    if len(reason) > MAX_REASON or any(ord(c) < 32 and c not in "\n\t" for c in reason):
        raise ValidationFailed({"reason": [f"At most {MAX_REASON} characters of text."]})
    return reason


def parse_page(status: str | None, size: str | None) -> tuple[Status | None, int]:
    """The listing's status filter and page size from the query string."""
    errors: dict[str, list[str]] = {}
    chosen = None
    if status:
        try:
            chosen = Status(status)
        except ValueError:
            errors["status"] = [f"One of: {', '.join(s.value for s in Status)}."]
    count = DEFAULT_PAGE
    if size:
        if not size.isdigit() or not 1 <= int(size) <= MAX_PAGE:
            errors["pageSize"] = [f"A whole number from 1 to {MAX_PAGE}."]
        else:
            count = int(size)
    if errors:
        raise ValidationFailed(errors)
    return chosen, count


class Approvals:
    """The admin routes' operations over the lifecycle's records."""

    def __init__(
        self,
        store: SignupStore,
        admission: Admission,
        index: DueIndex,
        audit: AuditLog,
        denials: DenialMemory,
        timers: Timers,
        *,
        denial_memory: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._admission = admission
        self._index = index
        self._audit = audit
        self._denials = denials
        self._timers = timers
        self._denial_memory = timedelta(seconds=denial_memory)
        self._clock = clock

    async def page(self, status: Status | None, size: int, token: str | None) -> dict[str, Any]:
        """One page of sign-ups (admin views) and the next page's token."""
        try:
            items, following = await self._store.page(status, size, token)
        except ValueError:
            raise ValidationFailed({"continuationToken": ["Not a token this API gave out."]}) from None
        return {"items": [admin_view(s) for s in items], "continuationToken": following}

    async def views(self, ids: list[str]) -> list[dict[str, Any]]:
        """The admin views of these requests, read in parallel, in the order given (missing ones left out)."""
        found = await asyncio.gather(*(self._store.get(i) for i in ids if is_signup_id(i)))
        return [admin_view(signup) for signup in found if signup is not None]

    async def _get(self, signup_id: str) -> Signup:
        signup = await self._store.get(signup_id) if is_signup_id(signup_id) else None
        if signup is None:
            raise UnknownSignup()
        return signup

    async def _pending(self, signup_id: str) -> Signup:
        """The request to decide; one the worker has not admitted yet is admitted here first (its delivery
        then finds it decided), so a decision never races the admission it depends on."""
        signup = await self._get(signup_id)
        if signup.status is Status.RECEIVED:
            signup = await self._admission.admit(signup, enqueue=False)
        return signup

    async def detail(self, signup_id: str) -> dict[str, Any]:
        """One sign-up with its history."""
        signup = await self._get(signup_id)
        return admin_view(signup, await self._audit.history(signup.id))

    async def approve(self, signup_id: str, caller: Caller, reason: str | None) -> dict[str, Any]:
        """Approve a pending sign-up: it is admitted (queued, or linked to the address's owner)."""
        for _ in range(MAX_ROUNDS):
            try:
                signup = await self._pending(signup_id)
            except ConcurrencyConflict:
                continue
            if signup.status is not Status.PENDING_APPROVAL:
                return await self._already(signup, "approved")
            now = self._clock()
            try:
                admitted = await self._admission.approve(
                    signup, decided_by=caller.actor, decided_at=now, decision_reason=reason
                )
            except ConcurrencyConflict:
                continue
            await self._audit.append(
                AuditEntry(signup.id, now, "approved", caller.actor, {"reason": reason} if reason else {})
            )
            log.info("approval.approved signup_id=%s domain=%s actor_kind=%s", signup.id, signup.domain, caller.kind)
            return {**admin_view(admitted), "result": "decided"}
        raise StorageError(f"sign-up {signup_id} kept changing")

    async def deny(self, signup_id: str, caller: Caller, reason: str) -> dict[str, Any]:
        """Deny a pending sign-up and remember the address."""
        for _ in range(MAX_ROUNDS):
            try:
                signup = await self._pending(signup_id)
            except ConcurrencyConflict:
                continue
            if signup.status is not Status.PENDING_APPROVAL:
                return await self._already(signup, "denied")
            now = self._clock()
            try:
                # A due entry first, though the request ends here: the sweeper's visit repairs the day index
                # (shared.stats) should the process die between the write and its index update.
                await self._index.add(
                    DueEntry(bucket_of(now + timedelta(seconds=self._timers.queued_grace)), signup.id)
                )
                denied = await write(
                    self._store,
                    signup,
                    Event.DENY,
                    clock=self._clock,
                    decided_by=caller.actor,
                    decided_at=now,
                    decision_reason=reason,
                    due_at=None,
                )
            except ConcurrencyConflict:
                continue
            await self._audit.append(AuditEntry(signup.id, now, "denied", caller.actor, {"reason": reason}))
            await self._denials.remember(denied.email, denied.id, now + self._denial_memory)
            log.info("approval.denied signup_id=%s domain=%s actor_kind=%s", signup.id, signup.domain, caller.kind)
            return {**admin_view(denied), "result": "decided"}
        raise StorageError(f"sign-up {signup_id} kept changing")

    async def _already(self, signup: Signup, wanted: str) -> dict[str, Any]:
        """Answer a decision for a request that is no longer pending: the same outcome again, or 409."""
        decided = signup.decided_at is not None
        outcome = "denied" if signup.status is Status.DENIED else "approved"
        if not decided or outcome != wanted:
            state = f"was {outcome} by {signup.decided_by}" if decided else f"is {signup.status.value}"
            raise DecisionConflict(f"This request {state}; it is no longer pending.", admin_view(signup))
        # The same outcome again (a retry, or the loser of a race): finish what the first call may have left.
        decided_at = signup.decided_at
        assert decided_at is not None
        detail = {"reason": signup.decision_reason} if signup.decision_reason else {}
        await self._audit.append(AuditEntry(signup.id, decided_at, outcome, signup.decided_by or "", detail))
        if outcome == "approved" and signup.status is Status.QUEUED:
            await self._admission.requeue(signup)
        elif outcome == "denied":
            until = decided_at + self._denial_memory
            await self._denials.remember(signup.email, signup.id, until)
        return {**admin_view(signup), "result": "already_decided"}
