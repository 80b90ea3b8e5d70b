"""Bulk decisions: one reason, up to 100 requests, each decided through ``Approvals`` as the single routes do.

``POST /api/manage/decisions`` with ``{"ids": [...], "decision": "approve"|"deny", "reason": "..."}`` (a reason
is required to deny). Each id gets its own result: ``approved``/``denied`` (decided now), ``already_decided``
(the same outcome was recorded before: a retried bulk call), ``conflict`` (decided the other way, or no longer
pending) or ``not_found``. Decisions are idempotent, so a bulk call cut short by a storage fault (503) is
simply sent again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from ..access import Caller
from ..errors import DecisionConflict, UnknownSignup, ValidationFailed
from .service import MAX_REASON, Approvals

MAX_IDS: Final = 100
CONCURRENCY: Final = 8
DECISIONS: Final = ("approve", "deny")


def parse_decisions(content_type: str | None, body: bytes) -> tuple[list[str], str, str | None]:
    """The ids, the decision and the reason from the JSON body; every problem named at once."""
    if (content_type or "").split(";")[0].strip().lower() not in {"application/json", ""}:
        raise ValidationFailed({"body": ['Send JSON: {"ids": [...], "decision": "approve"|"deny", "reason": "..."}.']})
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed({"body": ["The body is not valid JSON."]}) from None
    if not isinstance(data, dict):
        raise ValidationFailed({"body": ["Send an object with ids, decision and reason."]})
    errors: dict[str, list[str]] = {}
    extra = set(data) - {"ids", "decision", "reason"}
    if extra:
        errors["body"] = [f"Unknown members: {', '.join(sorted(extra))}."]
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS or not all(isinstance(i, str) and i for i in ids):
        errors["ids"] = [f"A list of 1 to {MAX_IDS} request ids."]
        ids = []
    decision = data.get("decision")
    if decision not in DECISIONS:
        errors["decision"] = ["One of: approve, deny."]
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        errors["reason"] = ["The reason must be text."]
        reason = None
    reason = reason.strip() if reason else None
    if reason is None and decision == "deny":
        errors["reason"] = ["A reason is required to deny."]
    elif reason is not None and (len(reason) > MAX_REASON or any(ord(c) < 32 and c not in "\n\t" for c in reason)):
        errors["reason"] = [f"At most {MAX_REASON} characters of text."]
    if errors:
        raise ValidationFailed(errors)
    return list(dict.fromkeys(ids)), str(decision), reason


async def decide_all(
    approvals: Approvals, ids: list[str], decision: str, reason: str | None, caller: Caller
) -> dict[str, Any]:
    """Decide each request (a few at a time); one result per id, in the order given."""
    gate = asyncio.Semaphore(CONCURRENCY)
    decided = "approved" if decision == "approve" else "denied"

    async def one(signup_id: str) -> dict[str, str]:
        async with gate:
            try:
                if decision == "approve":
                    view = await approvals.approve(signup_id, caller, reason)
                else:
                    assert reason is not None
                    view = await approvals.deny(signup_id, caller, reason)
            except UnknownSignup:
                return {"id": signup_id, "result": "not_found"}
            except DecisionConflict:
                return {"id": signup_id, "result": "conflict"}
            result = decided if view.get("result") == "decided" else "already_decided"
            return {"id": signup_id, "result": result}

    return {"results": list(await asyncio.gather(*(one(i) for i in ids)))}
