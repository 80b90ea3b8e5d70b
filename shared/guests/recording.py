"""Filling the register: one record per invited sign-up, now (``record_invited``) and for the past (``backfill``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..lifecycle.models import Signup, Status
from ..lifecycle.store import SignupStore
from ..policy.document import Policy
from ..policy.loader import PolicySource
from .records import DAY, GuestDue, GuestRecord, first_due
from .register import GuestRegister, index_day

log = logging.getLogger(__name__)
BACKFILL_PAGE = 100


def record_for(
    signup: Signup,
    policy: Policy,
    *,
    default_sponsors: tuple[str, ...] = (),
    now: datetime | None = None,
    day: timedelta = DAY,
) -> GuestRecord | None:
    """The register's record for an invited sign-up, or None when it made no guest the portal can name."""
    if signup.status is not Status.INVITED or not signup.invited_user_id:
        return None
    invited_at = signup.invited_at or signup.updated_at
    profile = policy.profile(signup.policy_profile) if signup.policy_profile else None
    rules = profile.lifecycle if profile is not None else None
    if signup.decided_by and signup.decided_by != "function-key":
        approvers: tuple[str, ...] = (signup.decided_by,)
    else:
        approvers = policy.approvers_for(signup.policy_profile)
    sponsors = profile.sponsors if profile is not None and profile.sponsors is not None else default_sponsors
    return GuestRecord(
        user_id=signup.invited_user_id,
        signup_id=signup.id,
        profile=signup.policy_profile,
        invited_at=invited_at,
        # Joined, or still to join (due, sending, unknown): removing a membership that never came is a no-op
        # (404), while forgetting one would leave access behind. Only refused memberships ("failed:<code>") drop.
        groups=tuple(sorted(gid for gid, step in signup.groups.items() if not step.startswith("failed:"))),
        sponsors=tuple(sponsors),
        approvers=approvers,
        due_at=first_due(rules, invited_at, day),
        updated_at=now or datetime.now(UTC),
    )


async def record_invited(
    signup: Signup,
    *,
    register: GuestRegister,
    policy: Policy,
    default_sponsors: tuple[str, ...] = (),
    now: datetime | None = None,
    day: timedelta = DAY,
) -> GuestRecord | None:
    """Register the guest an invited sign-up made; safe to call again for the same sign-up (at most one record).

    Contract for the lifecycle: call it once the sign-up's ``invited`` status is stored (its groups may
    still be open: every group not refused is recorded), with the policy
    in force and the settings' ``InvitationOptions.sponsor_ids`` as ``default_sponsors``. It returns the
    record (the one stored before, if the guest was registered already), or None for a sign-up that is
    not ``invited`` or has no ``invited_user_id``. It raises ``StorageError`` when storage fails: retry
    later (the call is idempotent) or leave it to ``backfill``. The due entry is written before the
    record, so a record never exists without its entry; an entry without a record is dropped by readers.
    """
    record = record_for(signup, policy, default_sponsors=default_sponsors, now=now, day=day)
    if record is None:
        return None
    if record.due_at is not None:
        await register.schedule(GuestDue(index_day(record.due_at, now), record.user_id))
    stored = await register.insert(record)
    if stored is None:  # registered already (a redelivery, the backfill, or a re-invitation of the same user)
        return await register.get(record.user_id)
    log.info("guest registered signup_id=%s profile=%s", signup.id, record.profile)
    return stored


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill did."""

    read: int = 0  # invited sign-ups read
    registered: int = 0  # new records
    already: int = 0  # guests registered before
    skipped: int = 0  # invited sign-ups without a user id
    token: str | None = None  # where to resume, when it stopped early


async def backfill(
    store: SignupStore,
    register: GuestRegister,
    policy: Policy,
    *,
    default_sponsors: tuple[str, ...] = (),
    day: timedelta = DAY,
    page_size: int = BACKFILL_PAGE,
    max_pages: int | None = None,
    token: str | None = None,
) -> BackfillReport:
    """Register every invited sign-up already on record, page by page (``SignupStore.page``).

    Idempotent: a guest registered before is left as it is. ``max_pages`` bounds one run; the report's
    ``token`` resumes it. A storage failure stops the run and raises, after the pages already done.
    """
    read = registered = already = skipped = pages = 0
    while True:
        signups, token = await store.page(Status.INVITED, page_size, token)
        for signup in signups:
            read += 1
            record = record_for(signup, policy, default_sponsors=default_sponsors, day=day)
            if record is None:
                skipped += 1
                continue
            if record.due_at is not None:
                await register.schedule(GuestDue(index_day(record.due_at), record.user_id))
            if await register.insert(record) is None:
                already += 1
            else:
                registered += 1
        pages += 1
        if token is None or (max_pages is not None and pages >= max_pages):
            break
    return BackfillReport(read, registered, already, skipped, token)


class GuestRecorder:
    """``record_invited`` bound to its register, the policy source and the settings' sponsors.

    What the lifecycle holds (composed in ``shared/services.py``) and calls as
    ``await recorder.record_invited(signup)`` once an ``invited`` status is stored.
    """

    def __init__(
        self,
        register: GuestRegister,
        policy: PolicySource,
        default_sponsors: tuple[str, ...] = (),
        day: timedelta = DAY,
    ) -> None:
        self._register = register
        self._policy = policy
        self._default_sponsors = default_sponsors
        self._day = day

    async def record_invited(self, signup: Signup) -> GuestRecord | None:
        """See the module function ``record_invited``: idempotent; ``StorageError`` when storage fails."""
        return await record_invited(
            signup,
            register=self._register,
            policy=await self._policy.current(),
            default_sponsors=self._default_sponsors,
            day=self._day,
        )
