"""A profile's guest-lifecycle rules (``profiles[i].lifecycle`` in the policy document).

::

    "lifecycle": {"reviewEveryDays": 180, "reviewGraceDays": 14,
                  "onNoAnswer": "blockSignIn", "onRemove": "blockSignInAndDelete", "deleteAfterDays": 30,
                  "unredeemedReminderDays": [7, 14], "unredeemedExpiryDays": 30,
                  "inactiveDays": 90}

* ``reviewEveryDays``: every N days after the guest was invited (then after each review), the guest's
  sponsors, or else the profile's approvers, are asked to confirm the guest still needs access.
* ``reviewGraceDays`` (default 14): how long they have to answer; shorter than ``reviewEveryDays``.
* ``onNoAnswer`` (default ``none``) and ``onRemove`` (default ``blockSignIn``): what happens when
  nobody answers in time, and when a reviewer says remove: ``none``, ``removeGroups`` (the profile's
  groups), ``blockSignIn`` (``accountEnabled: false``), or ``blockSignInAndDelete`` (block, then delete
  ``deleteAfterDays`` later; default 30). Modelled on entitlement management's
  ``externalUserLifecycleAction`` and ``durationUntilExternalUserDeletedAfterBlocked``.
* ``unredeemedReminderDays``: days after the invitation at which a guest who never redeemed is
  reminded (at most 5, increasing); ``unredeemedExpiryDays``: after it, a never-redeemed invitation is
  cleaned up with ``onRemove``. Reminder days must come before the expiry.
* ``inactiveDays`` (at least 30): a guest with no sign-in for that long is put up for review at once.
  It reads ``signInActivity``, which needs AuditLog.Read.All and an Entra ID P1/P2 licence; without
  them the feature reports "not available in this tenant" and never guesses.

A profile without ``lifecycle`` has no rules: its guests are never reviewed or touched. Problems are
reported through the document's checker, each by its path (``profiles[0].lifecycle.deleteAfterDays``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final


class RemovalAction(StrEnum):
    """What a removal does to a guest (``onNoAnswer`` and ``onRemove``)."""

    NONE = "none"
    REMOVE_GROUPS = "removeGroups"
    BLOCK_SIGN_IN = "blockSignIn"
    BLOCK_SIGN_IN_AND_DELETE = "blockSignInAndDelete"


LIFECYCLE_KEYS: Final = frozenset(
    {
        "reviewEveryDays",
        "reviewGraceDays",
        "onNoAnswer",
        "onRemove",
        "deleteAfterDays",
        "unredeemedReminderDays",
        "unredeemedExpiryDays",
        "inactiveDays",
    }
)
MAX_DAYS: Final = 3650
MAX_REMINDERS: Final = 5
MIN_INACTIVE_DAYS: Final = 30  # sign-in dates lag up to a day; shorter windows would judge on noise
DEFAULT_GRACE_DAYS: Final = 14
DEFAULT_DELETE_AFTER_DAYS: Final = 30  # as entitlement management's default
# Microsoft Graph application permissions each capability needs (FACTS.md, Guest lifecycle).
PERMISSION_READ_USERS: Final = "User.Read.All"
PERMISSION_WRITE_USERS: Final = "User.ReadWrite.All"
PERMISSION_GROUP_MEMBERS: Final = "GroupMember.ReadWrite.All"
PERMISSION_SIGN_INS: Final = "AuditLog.Read.All"
PERMISSION_MEMBERSHIPS: Final = "Directory.Read.All"


@dataclass(frozen=True)
class LifecycleRules:
    """One profile's lifecycle rules, validated; ``None`` fields are rules the profile does not use."""

    review_every_days: int | None = None
    review_grace_days: int = DEFAULT_GRACE_DAYS
    on_no_answer: RemovalAction = RemovalAction.NONE
    on_remove: RemovalAction = RemovalAction.BLOCK_SIGN_IN
    delete_after_days: int | None = None  # set exactly when an action is blockSignInAndDelete
    unredeemed_reminder_days: tuple[int, ...] = ()
    unredeemed_expiry_days: int | None = None
    inactive_days: int | None = None

    @property
    def actions(self) -> frozenset[RemovalAction]:
        """The removal actions these rules can take."""
        used = {self.on_remove}
        if self.review_every_days is not None or self.inactive_days is not None:
            used.add(self.on_no_answer)
        return frozenset(used - {RemovalAction.NONE})

    @property
    def reviews(self) -> bool:
        return self.review_every_days is not None or self.inactive_days is not None

    def permissions(self) -> frozenset[str]:
        """The Graph application permissions these rules need, and only those."""
        needed = {PERMISSION_READ_USERS}
        if self.actions & {RemovalAction.BLOCK_SIGN_IN, RemovalAction.BLOCK_SIGN_IN_AND_DELETE}:
            needed.add(PERMISSION_WRITE_USERS)
        if self.unredeemed_expiry_days is not None and self.on_remove != RemovalAction.NONE:
            needed.add(
                PERMISSION_WRITE_USERS if self.on_remove != RemovalAction.REMOVE_GROUPS else PERMISSION_GROUP_MEMBERS
            )
        if RemovalAction.REMOVE_GROUPS in self.actions:
            needed |= {PERMISSION_GROUP_MEMBERS, PERMISSION_MEMBERSHIPS}
        if self.inactive_days is not None:
            needed.add(PERMISSION_SIGN_INS)
        return frozenset(needed)


def required_permissions(rules: Iterable[LifecycleRules | None]) -> frozenset[str]:
    """What every configured profile's rules need together (empty when no profile has rules)."""
    needed: set[str] = set()
    for rule in rules:
        if rule is not None:
            needed |= rule.permissions()
    return frozenset(needed)


def parse_lifecycle_rules(value: Any, path: str, fail: Callable[[str, str], None]) -> LifecycleRules | None:
    """Validate ``profiles[i].lifecycle``; report each problem as ``fail(path, why)``; None if any."""
    if not isinstance(value, Mapping):
        fail(path, "must be an object")
        return None
    problems: list[tuple[str, str]] = []

    def bad(key: str, why: str) -> None:
        problems.append((f"{path}.{key}", why))

    for key in sorted(set(value) - LIFECYCLE_KEYS):
        bad(key, "is not a known key")

    def days(key: str, low: int = 1) -> int | None:
        if key not in value:
            return None
        raw = value[key]
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= MAX_DAYS:
            bad(key, f"must be a whole number of days from {low} to {MAX_DAYS}")
            return None
        return raw

    def action(key: str, default: RemovalAction) -> RemovalAction:
        raw = value.get(key, default.value)
        if raw not in tuple(a.value for a in RemovalAction):
            bad(key, f"must be one of {', '.join(a.value for a in RemovalAction)}")
            return default
        return RemovalAction(raw)

    every = days("reviewEveryDays")
    grace = days("reviewGraceDays")
    inactive = days("inactiveDays", MIN_INACTIVE_DAYS)
    on_no_answer = action("onNoAnswer", RemovalAction.NONE)
    on_remove = action("onRemove", RemovalAction.BLOCK_SIGN_IN)
    delete_after = days("deleteAfterDays")
    expiry = days("unredeemedExpiryDays")
    reminders = _reminder_days(value.get("unredeemedReminderDays", []), f"{path}.unredeemedReminderDays", problems)

    reviews = every is not None or inactive is not None
    if grace is not None and not reviews:
        bad("reviewGraceDays", "needs reviewEveryDays or inactiveDays")
    if "onNoAnswer" in value and not reviews:
        bad("onNoAnswer", "needs reviewEveryDays or inactiveDays")
    if every is not None and grace is not None and grace >= every:
        bad("reviewGraceDays", "must be shorter than reviewEveryDays")
    deleting = RemovalAction.BLOCK_SIGN_IN_AND_DELETE in {on_remove, on_no_answer if reviews else None}
    if delete_after is not None and not deleting:
        bad("deleteAfterDays", "applies only when onRemove or onNoAnswer is blockSignInAndDelete")
    if reminders and expiry is None:
        bad("unredeemedReminderDays", "needs unredeemedExpiryDays (reminders lead to a clean-up)")
    if reminders and expiry is not None and reminders[-1] >= expiry:
        bad("unredeemedReminderDays", "every reminder must come before unredeemedExpiryDays")
    if not (reviews or expiry is not None):
        problems.append((path, "must name at least reviewEveryDays, inactiveDays or unredeemedExpiryDays"))
    for where, why in problems:
        fail(where, why)
    if problems:
        return None
    return LifecycleRules(
        review_every_days=every,
        review_grace_days=grace if grace is not None else DEFAULT_GRACE_DAYS,
        on_no_answer=on_no_answer,
        on_remove=on_remove,
        delete_after_days=(delete_after or DEFAULT_DELETE_AFTER_DAYS) if deleting else None,
        unredeemed_reminder_days=reminders,
        unredeemed_expiry_days=expiry,
        inactive_days=inactive,
    )


def _reminder_days(raw: Any, path: str, problems: list[tuple[str, str]]) -> tuple[int, ...]:
    if not isinstance(raw, list):
        problems.append((path, "must be a list of days"))
        return ()
    if len(raw) > MAX_REMINDERS:
        problems.append((path, f"at most {MAX_REMINDERS} reminders"))
    found: list[int] = []
    for i, day in enumerate(raw):
        if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= MAX_DAYS:
            problems.append((f"{path}[{i}]", f"must be a whole number of days from 1 to {MAX_DAYS}"))
        elif found and day <= found[-1]:
            problems.append((f"{path}[{i}]", "must be later than the reminder before it"))
        else:
            found.append(day)
    return tuple(found)
