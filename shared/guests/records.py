"""A registered guest's record, and when its profile's rules first make it due."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..policy.lifecycle_rules import LifecycleRules

# The rules count in days; GUEST_LIFECYCLE_DAY_SECONDS shortens a day for trials and tests.
DAY = timedelta(days=1)


class GuestState(StrEnum):
    """Where a registered guest stands in its lifecycle."""

    ACTIVE = "active"  # invited (redeemed or not); its rules decide when it is next looked at
    REVIEW_PENDING = "review_pending"  # its sponsors or approvers were asked; the grace period runs
    BLOCKED = "blocked"  # sign-in disabled by the portal (restorable)
    DELETED = "deleted"  # deleted by the portal (restorable from deleted items for 30 days)
    REMOVED = "removed"  # removed by a rule whose action leaves the account (removeGroups, none): not looked at again


@dataclass(frozen=True)
class GuestRecord:
    """One guest the portal created or converted."""

    user_id: str  # the directory object id: the key
    signup_id: str  # the sign-up that made it
    profile: str | None  # the policy profile that let it in (None: the default action)
    invited_at: datetime
    groups: tuple[str, ...] = ()  # groups the portal added it to
    sponsors: tuple[str, ...] = ()  # sponsor object ids set at invitation
    approvers: tuple[str, ...] = ()  # who approved it (or the profile's approvers, who review it)
    redeemed_at: datetime | None = None
    reviewed_at: datetime | None = None  # the last review someone answered (reviews count from it)
    due_at: datetime | None = None  # when its rules next need a look; None: no rule applies
    state: GuestState = GuestState.ACTIVE
    reminders: int = 0  # reminders sent (or in doubt: never resent) for an unredeemed invitation
    # The at-most-once mark: the step under way (``Step`` value; "block-delete" blocks then deletes later),
    # written with the record's ETag before the Graph call or mail, cleared when its outcome is known.
    intent: str | None = None
    intent_at: datetime | None = None
    review_asked_at: datetime | None = None
    blocked_at: datetime | None = None
    deleted_at: datetime | None = None
    updated_at: datetime | None = None
    etag: str | None = None

    def evolve(self, **changes: Any) -> GuestRecord:
        """A copy with ``changes`` (the ETag is kept for the conditional write)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class GuestDue:
    """A due-index entry: look at ``user_id`` once ``day`` (``YYYYMMDD``, UTC) has come."""

    day: str
    user_id: str


def first_due(rules: LifecycleRules | None, invited_at: datetime, day: timedelta = DAY) -> datetime | None:
    """The first moment a new guest's rules need a look: the earliest reminder, expiry, review or inactivity check.

    None when the profile has no rules: the guest is registered but never due.
    """
    if rules is None:
        return None
    days: list[int] = []
    if rules.unredeemed_reminder_days:
        days.append(rules.unredeemed_reminder_days[0])
    if rules.unredeemed_expiry_days is not None:
        days.append(rules.unredeemed_expiry_days)
    if rules.review_every_days is not None:
        days.append(rules.review_every_days)
    if rules.inactive_days is not None:
        days.append(rules.inactive_days)
    return invited_at + min(days) * day if days else None
