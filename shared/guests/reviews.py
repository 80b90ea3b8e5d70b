"""The Reviews tab's and the restore routes' operations over the register (``/api/manage/reviews``, ``/guests``).

* ``reviews``: one page of the guests awaiting review (the state index, bounded pages);
* ``decide``: keep or remove up to 100 guests at once, each answered on its own;
* ``in_state``: one page of the blocked or deleted guests, with ``restorableUntil``;
* ``restore``: a blocked guest is enabled again; a deleted one is restored from deleted items within
  Microsoft's 30 days (past them: ``RestoreWindowPassed``, a 409).

Only registered guests are ever touched: a user id the register does not hold is ``not_found``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from ..errors import (
    DecisionConflict,
    DirectoryUnavailable,
    GraphError,
    RestoreWindowPassed,
    UnknownGuest,
    ValidationFailed,
)
from ..graph.directory import DELETED_ITEM_RETENTION, Directory
from ..policy import PolicySource
from ..policy.lifecycle_rules import LifecycleRules
from .acting import Busy, GuestActions
from .records import GuestRecord, GuestState

MAX_DECISIONS: Final = 100
# A directory object id is a GUID; anything else is refused before it becomes a storage key.
USER_ID: Final = re.compile(r"[0-9A-Za-z-]{1,64}")
DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 200
MAX_REASON: Final = 500
LISTED_STATES: Final = {"blocked": GuestState.BLOCKED, "deleted": GuestState.DELETED}


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def item(record: GuestRecord) -> dict[str, Any]:
    """A guest as the routes list it."""
    return {
        "userId": record.user_id,
        "signupId": record.signup_id,
        "profile": record.profile,
        "state": record.state.value,
        "invitedAt": _stamp(record.invited_at),
        "redeemedAt": _stamp(record.redeemed_at),
        "lastReviewedAt": _stamp(record.reviewed_at),
        "reviewDueBy": _stamp(record.due_at) if record.state is GuestState.REVIEW_PENDING else None,
    }


def parse_page_size(value: str | None) -> int:
    """``pageSize`` from the query string (1 to 200, default 50)."""
    if not value:
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise ValidationFailed({"pageSize": [f"A whole number from 1 to {MAX_PAGE}."]})
    return int(value)


def parse_state(value: str | None) -> GuestState:
    """``state`` of ``GET /api/manage/guests``: blocked or deleted."""
    if value not in LISTED_STATES:
        raise ValidationFailed({"state": ["One of: blocked, deleted."]})
    return LISTED_STATES[value]


def parse_decisions(content_type: str | None, body: bytes) -> tuple[list[str], str, str | None]:
    """``{"userIds": [...≤100], "decision": "keep"|"remove", "reason"?}``; every problem named at once."""
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise ValidationFailed({"body": ['Send JSON: {"userIds": [...], "decision": "keep" or "remove"}.']})
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed({"body": ["The body is not valid JSON."]}) from None
    if not isinstance(data, Mapping):
        raise ValidationFailed({"body": ["Send an object with userIds, decision and an optional reason."]})
    errors: dict[str, list[str]] = {}
    extra = sorted(set(data) - {"userIds", "decision", "reason"})
    if extra:
        errors["body"] = [f"Unknown members: {', '.join(extra)}."]
    ids = data.get("userIds")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and USER_ID.fullmatch(i) for i in ids):
        errors["userIds"] = [f"A list of 1 to {MAX_DECISIONS} user ids."]
    elif len(ids) > MAX_DECISIONS:
        errors["userIds"] = [f"At most {MAX_DECISIONS} user ids at once."]
    decision = data.get("decision")
    if decision not in ("keep", "remove"):
        errors["decision"] = ["One of: keep, remove."]
    reason = data.get("reason")
    if "reason" in data and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        errors["reason"] = [f"Text of at most {MAX_REASON} characters."]
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(ids, list)
    unique = list(dict.fromkeys(ids))  # one answer per guest, in the order asked
    return unique, str(decision), (reason.strip() or None) if isinstance(reason, str) else None


class GuestAdmin:
    """What the manage routes ask of the guest lifecycle."""

    def __init__(self, actions: GuestActions, directory: Directory, policy: PolicySource) -> None:
        self._actions = actions
        self._register = actions.register
        self._directory = directory
        self._policy = policy

    async def _rules(self, record: GuestRecord) -> LifecycleRules | None:
        profile = (await self._policy.current()).profile(record.profile) if record.profile else None
        return profile.lifecycle if profile is not None else None

    async def _page(self, state: GuestState, size: int, token: str | None) -> tuple[list[GuestRecord], str | None]:
        try:
            ids, token = await self._register.in_state(state, size, token)
        except ValueError:
            raise ValidationFailed({"continuationToken": ["Not a token this list returned."]}) from None
        records = [r for uid in ids if (r := await self._register.get(uid)) is not None and r.state is state]
        return records, token

    async def reviews(self, size: int, token: str | None) -> dict[str, Any]:
        """One page of the guests awaiting review."""
        records, token = await self._page(GuestState.REVIEW_PENDING, size, token)
        return {"items": [item(r) for r in records], "continuationToken": token}

    async def in_state(self, state: GuestState, size: int, token: str | None) -> dict[str, Any]:
        """One page of the blocked or deleted guests; ``restorableUntil`` for the deleted ones."""
        records, token = await self._page(state, size, token)
        items = []
        for record in records:
            until = record.deleted_at + DELETED_ITEM_RETENTION if record.deleted_at else None
            items.append({**item(record), "restorableUntil": _stamp(until)})
        return {"items": items, "continuationToken": token}

    async def decide(self, user_ids: list[str], decision: str, actor: str, reason: str | None) -> dict[str, Any]:
        """Keep or remove each guest; per guest ``kept``, ``removed``, ``in_doubt``, ``not_found``,
        ``not_pending`` (not awaiting review), ``busy`` (being acted on: try again) or ``failed``."""
        results = []
        for user_id in user_ids:
            results.append({"userId": user_id, "result": await self._decide(user_id, decision, actor, reason)})
        return {"results": results}

    async def _decide(self, user_id: str, decision: str, actor: str, reason: str | None) -> str:
        record = await self._register.get(user_id)
        if record is None:
            return "not_found"
        if record.state is not GuestState.REVIEW_PENDING:
            return "not_pending"
        if record.intent is not None:
            return "busy"
        rules = await self._rules(record)
        try:
            if decision == "keep":
                await self._actions.keep(record, rules, actor, reason)
                return "kept"
            if rules is None:
                return "not_pending"
            reviewed = await self._actions.save(record, reviewed_at=self._actions.clock())
            after = await self._actions.remove(
                reviewed, rules, rules.on_remove, reason or "reviewer said remove", actor
            )
        except Busy:
            return "busy"
        if after.intent is not None:
            return "in_doubt"  # the mark stays; the sweep settles it by a directory read
        if after.state is GuestState.REVIEW_PENDING:
            return "failed"
        return "removed"

    async def restore(self, user_id: str, actor: str) -> dict[str, Any]:
        """Enable a blocked guest, or restore a deleted one from deleted items (409 past the 30 days)."""
        record = await self._register.get(user_id) if USER_ID.fullmatch(user_id) else None
        if record is None:
            raise UnknownGuest()
        if record.state not in (GuestState.BLOCKED, GuestState.DELETED):
            raise DecisionConflict(f"The guest is {record.state.value}, neither blocked nor deleted.", item(record))
        if record.intent is not None:
            raise DecisionConflict("The guest is being acted on; try again in a minute.", item(record))
        try:
            if record.state is GuestState.DELETED:
                deleted = await self._directory.get_deleted_user(user_id)
                if deleted is not None:
                    await self._directory.restore_deleted_user(user_id, priority="normal")
                elif await self._directory.get_guest(user_id) is None:  # not restored by an earlier try either
                    raise RestoreWindowPassed(
                        "The guest was deleted more than 30 days ago (or purged): Microsoft keeps deleted users "
                        "for 30 days only, so it cannot be restored. Invite it again instead."
                    )
            # Restored from deleted items a blocked guest comes back blocked: enabled in both cases.
            await self._directory.set_sign_in_enabled(user_id, True, priority="normal")
        except GraphError as exc:
            raise DirectoryUnavailable(
                f"The directory did not restore the guest ({exc.code or type(exc).__name__}); try again."
            ) from exc
        rules = await self._rules(record)
        now = self._actions.clock()
        active = record.evolve(state=GuestState.ACTIVE, reviewed_at=now, blocked_at=None, deleted_at=None)
        saved = await self._actions.save(
            record,
            state=GuestState.ACTIVE,
            reviewed_at=now,
            blocked_at=None,
            deleted_at=None,
            due_at=self._actions.next_due(active, rules, now),
        )
        await self._actions.note(saved, "guest_restored", actor, was=record.state.value)
        return {"userId": user_id, "state": saved.state.value}
