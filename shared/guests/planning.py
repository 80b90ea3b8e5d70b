"""What the lifecycle rules would do to one registered guest now, and why (``plan``): no side effects.

``signup-admin lifecycle --dry-run`` prints these; the guest sweep will act on them. Inputs are the
register's record, the profile's rules, what Graph says of the guest now (``GuestAccount``, None when it
is not in the directory) and whether ``signInActivity`` could be read in this tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from ..graph.directory import GuestAccount
from ..policy.lifecycle_rules import LifecycleRules, RemovalAction
from .records import DAY, GuestRecord, GuestState

SIGN_IN_LAG: Final = timedelta(days=1)  # Graph's last sign-in date can lag a day: never judge inside it
PENDING: Final = "PendingAcceptance"


class Step(StrEnum):
    """What would happen."""

    NOTHING = "nothing"
    REMIND = "remind"  # mail the unredeemed guest again
    REVIEW = "review"  # ask its sponsors or approvers to confirm
    REMOVE_GROUPS = "remove-groups"
    BLOCK = "block"  # accountEnabled: false
    DELETE = "delete"  # to deleted items (restorable for 30 days)


_REMOVAL: Final = {
    RemovalAction.NONE: Step.NOTHING,
    RemovalAction.REMOVE_GROUPS: Step.REMOVE_GROUPS,
    RemovalAction.BLOCK_SIGN_IN: Step.BLOCK,
    RemovalAction.BLOCK_SIGN_IN_AND_DELETE: Step.BLOCK,  # deletion follows deleteAfterDays later
}


@dataclass(frozen=True)
class Plan:
    """One guest's next step and the reason, in words an operator reads."""

    user_id: str
    profile: str | None
    step: Step
    reason: str


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def plan(
    record: GuestRecord,
    rules: LifecycleRules | None,
    account: GuestAccount | None,
    now: datetime,
    *,
    sign_in_available: bool = True,
    day: timedelta = DAY,
) -> Plan:
    """The step the rules call for now (at most one), with its reason (``day``: the rules' day, shortened in tests)."""

    def result(step: Step, reason: str) -> Plan:
        return Plan(record.user_id, record.profile, step, reason)

    if rules is None:
        return result(Step.NOTHING, f"profile {record.profile or '(default)'} has no lifecycle rules")
    if record.state is GuestState.DELETED:
        return result(Step.NOTHING, "deleted by the portal; restorable from deleted items for 30 days")
    if record.state is GuestState.REMOVED:
        return result(Step.NOTHING, "removed by a rule that leaves the account; not looked at again")
    if account is None:
        return result(Step.NOTHING, "not in the directory any more (removed outside the portal)")
    due = record.due_at
    if record.state is GuestState.BLOCKED:
        if rules.delete_after_days is None or due is None:
            return result(Step.NOTHING, "sign-in blocked; the rules do not delete")
        if due is not None and now >= due:
            return result(Step.DELETE, f"blocked, and deleteAfterDays={rules.delete_after_days} has passed")
        return result(Step.NOTHING, f"sign-in blocked; deletion due on {_day(due) if due else '?'}")
    if record.state is GuestState.REVIEW_PENDING:
        if due is not None and now >= due:
            step = _REMOVAL[rules.on_no_answer]
            return result(
                step, f"no answer within reviewGraceDays={rules.review_grace_days}: onNoAnswer={rules.on_no_answer}"
            )
        return result(Step.NOTHING, f"review asked; answers accepted until {_day(due) if due else '?'}")

    age = now - record.invited_at
    unredeemed = account.external_user_state == PENDING and record.redeemed_at is None
    if unredeemed and rules.unredeemed_expiry_days is not None:
        if age >= rules.unredeemed_expiry_days * day:
            return result(
                _REMOVAL[rules.on_remove],
                f"invitation not redeemed after unredeemedExpiryDays={rules.unredeemed_expiry_days}: "
                f"onRemove={rules.on_remove}",
            )
        reminders, sent = rules.unredeemed_reminder_days, record.reminders
        if sent < len(reminders) and age >= reminders[sent] * day:
            return result(
                Step.REMIND, f"not redeemed after {reminders[sent]} days (reminder {sent + 1} of {len(reminders)})"
            )
    if rules.review_every_days is not None:
        since = record.reviewed_at or record.invited_at
        if now - since >= rules.review_every_days * day:
            return result(
                Step.REVIEW, f"reviewEveryDays={rules.review_every_days}: last reviewed or invited on {_day(since)}"
            )
    notes = ""
    if rules.inactive_days is not None:
        if not sign_in_available:
            notes = "; inactiveDays: sign-in activity is not available in this tenant (not judged)"
        elif account.sign_in is not None:
            last = account.sign_in.latest or account.created or record.invited_at
            if now - last >= rules.inactive_days * day + SIGN_IN_LAG * (day / DAY):
                never = account.sign_in.latest is None
                seen = "never signed in" if never else f"last signed in on {_day(last)}"
                return result(Step.REVIEW, f"inactiveDays={rules.inactive_days}: {seen}")
    next_due = f"no rule is due now; next look on {_day(due)}" if due else "no rule is due now"
    return result(Step.NOTHING, next_due + notes)
