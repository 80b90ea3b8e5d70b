"""The doubt rule, in one place: a request that may have invited never ends ``failed`` unread.

``maybe_invited`` is set before every ``POST /invitations`` and cleared only by
an answer or a directory read proving Graph did not act. Every rule that would
end a request (its deadline, the poison queue, the fault limit, the sweeper)
asks ``give_up`` what to write:

* no doubt: ``failed``, with the last code;
* in doubt, before the cap: stay ``retrying`` and read the directory again
  later (no POST, no mail: the worker's ``settle_doubt`` path);
* in doubt past ``deadline + doubt_cap``: ``unknown``, final, still holding the
  address, so nobody is invited (or mailed) again for it within the window.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from .models import Signup, Status
from .timers import Timers
from .transitions import Event

PUBLIC_MESSAGES: Final = {
    "permanent": "The directory refused the invitation.",
    "member": "This address belongs to an account of the organisation; it cannot be invited as a guest.",
    "transient": "The directory could not be reached in time; the sign-up was not completed.",
    "internal": "The sign-up could not be processed.",
    "poisoned": "The sign-up could not be processed after repeated attempts.",
    "conversion": "The account does not meet the conditions for conversion to a B2B user.",
    "unknown": "We could not confirm whether the invitation was sent. Check your mailbox, or contact us.",
}
DOUBT_CODE: Final = "InvitationInDoubt"
MAX_DOUBT_READ_DELAY: Final = 3600.0


def failure(code: str, kind: str, detail: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """The record changes of a ``failed`` request."""
    return {
        "error_code": code,
        "error_message": PUBLIC_MESSAGES[kind],
        "error_detail": detail,
        "graph_request_id": request_id,
        "lease_until": None,
        "due_at": None,
    }


def in_doubt(signup: Signup) -> bool:
    """True when an earlier attempt may have invited and no read has settled it."""
    return signup.maybe_invited and signup.status is not Status.INVITED


def give_up(
    signup: Signup, now: datetime, timers: Timers, *, code: str, kind: str, jitter: float = 0.5, **more: Any
) -> tuple[Event, dict[str, Any]]:
    """What ending ``signup`` means now: ``failed``, a later directory read, or ``unknown`` past the cap."""
    if not signup.maybe_invited:
        return Event.GIVE_UP, {**failure(code, kind, more.pop("detail", None)), **more}
    cap = signup.deadline + timedelta(seconds=timers.doubt_cap)
    if now >= cap:
        changes = failure(DOUBT_CODE, "unknown", f"last error {code}")
        return Event.DOUBT_CAP, {**changes, **more}
    step = min(MAX_DOUBT_READ_DELAY, timers.backoff(max(1, signup.attempts + signup.faults), jitter))
    due = min(now + timedelta(seconds=max(step, timers.ambiguous_delay)), cap)
    more.pop("detail", None)
    return Event.RETRY, {"due_at": due, "lease_until": None, "error_code": code, **more}


def settled_absent(signup: Signup, now: datetime, timers: Timers) -> bool:
    """True when a read that found nobody may be believed: long enough after the last POST for it to show."""
    last = signup.last_attempt_at or signup.updated_at
    return now - last >= timedelta(seconds=timers.ambiguous_delay)
