"""The invitation worker: drives one request through ``transitions``, one delivery at a time.

One queue delivery runs ``process``; every write is a declared transition,
ETag-conditional (``writes.write``), and a lost race re-reads and decides again::

    read ──► missing / final / linked ────────────────────────► done (nothing to do)
      ├───► received ──► admission (claim, review or queue) ───► go on in place when queued
      ├───► pending_approval ─────────────────────────────────► its approvers' mail, or done
      ├───► inviting, lease live ─────────────────────────────► re-enqueue for the lease's end
      ├───► retrying, not due yet ────────────────────────────► re-enqueue for the due time
      ├───► past the deadline ──► in doubt: read only (settle_doubt) ──► invited | failed | unknown
      │                         └► no doubt: failed (the last transient code)
      └───► queued, retrying and due, or inviting with the lease expired:
              an address in one of the tenant's verified domains ─► failed (TenantDomain)
              read the directory first when nothing is known yet, or when an
              earlier attempt may have acted (maybe_invited):
                 a member of this tenant ─────────────────────► failed (ExistingMember)
                 a guest who already redeemed ────────────────► invited (no write, no mail)
                 nobody, long enough after the last POST ─────► the doubt is settled: Graph did not act
              POST /invitations, fenced: after the pacer's wait and right before each POST the
                 worker checks the address claim and takes the lease with a conditional write
                 (inviting, attempts+1, maybe_invited=true); a lost fence sends nothing
                 ├── success ─────────────────────────────────► invited (ids, redeem URL)
                 ├── permanent ───────────────────────────────► failed (Graph's code)
                 ├── transient (Graph did not act) ───────────► retrying (maybe_invited as before)
                 └── ambiguous (Graph may have acted) ────────► retrying (maybe_invited=true)

A retry is scheduled here, not by the host: the record gets the next due time
(exponential backoff with jitter, capped) and the message is re-enqueued with
that visibility delay; the delivery then completes normally. Ending a request
(deadline, poison, too many faults) goes through ``doubt.give_up``, so a
request that may have invited never ends ``failed`` unread.

The lease covers the fence's write, one POST (bounded by the Graph timeout) and
the outcome's write: every wait before it (the pacer, the shared budget, 429
pauses) happens before the fence, and the fence renews the lease before every
POST. A sign-up that names a policy profile is invited with that profile's
options (``Profile.invitation_options`` over the settings' options).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from .. import telemetry
from ..audit import AuditEntry, AuditLog
from ..errors import (
    AmbiguousGraphError,
    ConcurrencyConflict,
    GraphError,
    PermanentGraphError,
    StorageError,
    TransientGraphError,
)
from ..graph.directory import Directory, DirectoryUser, Invitation, InvitationOptions
from ..policy import PolicySource
from . import doubt
from .admission import Admission
from .models import DirectoryBefore, Signup, Status, Step, id_minute, utcnow
from .queue import SignupQueue
from .store import SignupStore
from .timers import Timers
from .transitions import Event
from .writes import write

log = logging.getLogger(__name__)

MAX_CONFLICT_ROUNDS: Final = 5
MAX_FAULTS: Final = 3  # unexpected exceptions or poisonings before a sign-up is given up
EARLY_TOLERANCE: Final = timedelta(seconds=1)


class ClaimLost(Exception):
    """The address's claim names another request at the fence: nothing is sent."""


class FollowUpRunner(Protocol):
    """The steps around an invitation (``shared.onboarding.FollowUps``)."""

    async def invited_steps(self, signup: Signup) -> dict[str, Any]:
        """The steps an invitation opens, as record changes."""
        ...

    async def run(self, signup: Signup) -> Signup:
        """Do the open steps; raises ``ConcurrencyConflict`` when the record changed underneath."""
        ...

    async def existing_account_mail(self, signup: Signup) -> tuple[Signup, dict[str, Any]]:
        """A member's address, before its request ends: its one "you already have an account" mail; the record
        as written and the changes for the final write."""
        ...


class GuestRegistry(Protocol):
    """Where an invited guest is registered for its lifecycle rules (``shared.guests.GuestRecorder``)."""

    async def record_invited(self, signup: Signup) -> Any:
        """Record the guest ``signup`` invited (idempotent); ``StorageError`` when storage fails."""
        ...


class Outcome(StrEnum):
    """What one delivery did."""

    INVITED = "invited"
    FAILED = "failed"
    RESCHEDULED = "rescheduled"
    ALREADY_DONE = "already_done"
    MISSING = "missing"
    NOT_ADMITTED = "not_admitted"  # waiting for approval: not the worker's to invite
    FOLLOWED_UP = "followed_up"  # an approver mail, group additions or the organisation's mail


def directory_state(users: list[DirectoryUser], email: str) -> tuple[DirectoryBefore, str | None]:
    """What the directory holds for ``email``: nobody, a guest (pending or redeemed), or a member."""
    if not users:
        return DirectoryBefore.ABSENT, None
    exact = [u for u in users if (u.mail or "").casefold() == email.casefold()]
    user = (exact or users)[0]
    invited = user.user_type == "Guest" or user.external_user_state is not None
    if not invited:
        return DirectoryBefore.MEMBER, user.id
    if user.external_user_state == "Accepted":
        return DirectoryBefore.GUEST_ACCEPTED, user.id
    return DirectoryBefore.GUEST_PENDING, user.id


class InvitationWorker:
    """Drives one sign-up from ``received`` to a final status, scheduling its own retries."""

    def __init__(
        self,
        store: SignupStore,
        queue: SignupQueue,
        directory: Directory,
        options: InvitationOptions,
        timers: Timers,
        *,
        admission: Admission,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
        policy: PolicySource | None = None,
        follow_ups: FollowUpRunner | None = None,
        audit: AuditLog | None = None,
        guests: GuestRegistry | None = None,
    ) -> None:
        self._guests = guests
        self._store = store
        self._admission = admission
        self._policy = policy
        self._follow_ups = follow_ups
        self._audit = audit
        self._queue = queue
        self._directory = directory
        self._options = options
        self._timers = timers
        self._clock = clock
        self._jitter = jitter

    async def process(self, signup_id: str) -> Outcome:
        """Handle one delivery, as a span of the sign-up's trace. Raises only when storage fails (the host
        then redelivers)."""
        signup = await self._store.get(signup_id)
        if signup is None:
            return await self._missing(signup_id)
        with telemetry.span("signup.deliver", parent=signup.trace_parent, signup__id=signup_id) as current:
            outcome = await self._process(signup)
            current.set_attribute("signup.outcome", outcome.value)
            return outcome

    async def _missing(self, signup_id: str) -> Outcome:
        """No record. Intake writes the record and sends the message together, so a recent id's message may
        come first: it comes back after about its age (a few deliveries at most); an older one is done."""
        minute = id_minute(signup_id)
        age = (self._clock() - minute).total_seconds() if minute is not None else None
        if age is not None and age < self._timers.queued_grace:
            await self._queue.enqueue(signup_id, max(2.0, age))
            log.info("worker.not_recorded_yet signup_id=%s", signup_id)
            return Outcome.RESCHEDULED
        log.warning("worker.missing signup_id=%s", signup_id)
        return Outcome.MISSING

    async def _process(self, signup: Signup | None) -> Outcome:
        signup_id = signup.id if signup is not None else ""
        for _ in range(MAX_CONFLICT_ROUNDS):
            if signup is None:
                log.warning("worker.missing signup_id=%s", signup_id)
                return Outcome.MISSING
            try:
                return await self._step(signup)
            except ConcurrencyConflict:
                log.info("worker.conflict signup_id=%s", signup_id)
            signup = await self._store.get(signup_id)
        await self._queue.enqueue(signup_id, 1.0)
        return Outcome.RESCHEDULED

    async def _step(self, signup: Signup) -> Outcome:
        now = self._clock()
        if signup.status is Status.RECEIVED:
            if now >= signup.deadline:
                await self._end(signup, "DeadlineExceeded", "transient")
                return Outcome.FAILED
            signup = await self._admission.admit(signup, enqueue=False)
            if signup.status is Status.PENDING_APPROVAL and signup.approver_mail is Step.DUE and self._follow_ups:
                await self._follow_ups.run(signup)
                return Outcome.FOLLOWED_UP
            if signup.status is not Status.QUEUED:
                return Outcome.NOT_ADMITTED if signup.status is Status.PENDING_APPROVAL else Outcome.ALREADY_DONE
        if self._follow_ups is not None and self._has_steps(signup):
            retry_due = signup.due_at if signup.followup_attempts else None  # a scheduled retry of a step
            if retry_due is not None and retry_due > now + EARLY_TOLERANCE:
                await self._queue.enqueue(signup.id, (retry_due - now).total_seconds())
                return Outcome.RESCHEDULED
            await self._follow_ups.run(signup)
            return Outcome.FOLLOWED_UP
        if signup.status.terminal:
            log.info("worker.already_done signup_id=%s status=%s", signup.id, signup.status.value)
            return Outcome.ALREADY_DONE
        if signup.status is Status.PENDING_APPROVAL:
            log.info("worker.not_admitted signup_id=%s", signup.id)
            return Outcome.NOT_ADMITTED
        wake = self._wake_time(signup, now)
        if wake is not None:
            await self._queue.enqueue(signup.id, (wake - now).total_seconds())
            log.info(
                "worker.not_yet signup_id=%s status=%s wake_in=%.0f",
                signup.id,
                signup.status.value,
                (wake - now).total_seconds(),
            )
            return Outcome.RESCHEDULED
        if now >= signup.deadline or signup.faults >= MAX_FAULTS:
            # Given up (deadline, poison, too many faults): in doubt, only a read may settle it.
            if signup.maybe_invited:
                return await self._settle_doubt(signup)
            await self._end(signup, signup.error_code or "DeadlineExceeded", "transient")
            log.warning("worker.deadline signup_id=%s attempts=%s", signup.id, signup.attempts)
            return Outcome.FAILED
        return await self._attempt(signup)

    @staticmethod
    def _has_steps(signup: Signup) -> bool:
        """True when a pending or invited sign-up has a mail or group step still to do (or in doubt)."""
        if signup.status is Status.PENDING_APPROVAL:
            return signup.approver_mail in {Step.DUE, Step.SENDING}
        return signup.follow_up_open or (signup.status is Status.INVITED and signup.org_mail is Step.SENDING)

    def _wake_time(self, signup: Signup, now: datetime) -> datetime | None:
        """When a delivery that came too early should come back, or None to act now."""
        if signup.status is Status.INVITING and signup.lease_until and signup.lease_until > now:
            return signup.lease_until + EARLY_TOLERANCE
        if signup.status is Status.RETRYING and signup.due_at and signup.due_at > now + EARLY_TOLERANCE:
            return signup.due_at
        return None

    async def _read(self, signup: Signup) -> tuple[DirectoryBefore, str | None]:
        return directory_state(await self._directory.find_users_by_email(signup.email), signup.email)

    async def _settle_doubt(self, signup: Signup) -> Outcome:
        """Past the deadline, in doubt: read the directory (no POST, no mail) until it answers, or the cap."""
        now = self._clock()
        try:
            state, user_id = await self._read(signup)
        except GraphError as exc:
            return await self._end(signup, exc.code or "DirectoryUnreadable", "transient")
        before = signup.directory_before
        if state is DirectoryBefore.ABSENT:
            if before in {None, DirectoryBefore.ABSENT} and doubt.settled_absent(signup, now, self._timers):
                # Nobody there, long enough after the last POST: Graph did not act.
                await self._end(signup, signup.error_code or "DeadlineExceeded", "transient", maybe_invited=False)
                return Outcome.FAILED
            return await self._end(signup, signup.error_code or "DeadlineExceeded", "transient")
        if state is DirectoryBefore.MEMBER and before in {None, DirectoryBefore.ABSENT}:
            await self._end(signup, "ExistingMember", "member", maybe_invited=False)
            return Outcome.FAILED
        # The guest is there: our lost answer created it (or it existed and a read cannot tell): invited.
        await self._finish(signup, Event.INVITED, self._invited(None, user_id, None, mailed=None))
        log.info("worker.doubt_settled_invited signup_id=%s", signup.id)
        return Outcome.INVITED

    async def _attempt(self, signup: Signup) -> Outcome:
        if signup.conversion is not None:
            return await self._convert(signup, signup.conversion)
        before, existing = signup.directory_before, signup.existing_user_id
        in_doubt, silent = signup.maybe_invited, False
        if before is None:
            # The tenant's own verified domains hold members, never guests: refuse before any write.
            try:
                tenant_domain = signup.domain in await self._directory.verified_domains()
            except PermanentGraphError as exc:
                return await self._refuse(signup, exc.code, "permanent", exc)
            except (TransientGraphError, AmbiguousGraphError) as exc:
                return await self._retry(signup, exc, maybe_invited=signup.maybe_invited)
            if tenant_domain:
                log.warning("worker.tenant_domain signup_id=%s domain=%s", signup.id, signup.domain)
                return await self._refuse(signup, "TenantDomain", "member")
        if before is None or in_doubt:
            try:
                now_state, user_id = await self._read(signup)
            except PermanentGraphError as exc:
                if in_doubt:  # a refused read settles nothing: read again later
                    return await self._retry(signup, exc, maybe_invited=True)
                return await self._refuse(signup, exc.code, "permanent", exc)
            except (TransientGraphError, AmbiguousGraphError) as exc:
                return await self._retry(signup, exc, maybe_invited=signup.maybe_invited)
            if before is None:
                before, existing = now_state, user_id
                if before is DirectoryBefore.MEMBER:
                    log.warning("worker.member_address signup_id=%s domain=%s", signup.id, signup.domain)
                    return await self._refuse(
                        signup, "ExistingMember", "member", directory_before=before, existing_user_id=existing
                    )
                if before is DirectoryBefore.GUEST_ACCEPTED:
                    # Already a guest who redeemed: no invitation, no mail. docs/lifecycle.md: "Repeat sign-ups".
                    await self._finish(
                        signup,
                        Event.INVITED,
                        self._invited(None, existing, "Accepted", mailed=False),
                        directory_before=before,
                        existing_user_id=existing,
                    )
                    log.info("worker.existing_guest signup_id=%s domain=%s", signup.id, signup.domain)
                    return Outcome.INVITED
            if in_doubt:
                nobody = before is DirectoryBefore.ABSENT and now_state is DirectoryBefore.ABSENT
                if nobody and doubt.settled_absent(signup, self._clock(), self._timers):
                    in_doubt = False  # the earlier attempt did not act: invite as if for the first time
                elif nobody:
                    return await self._retry(signup, None, maybe_invited=True)
                else:
                    # Graph acted if the guest appeared since; for a guest who existed already we cannot
                    # tell, so we assume it did. Either way a silent re-invite recovers the redeem URL.
                    silent = True
        options = await self._options_for(signup)
        options = dataclasses.replace(options, send_message=False) if silent else options
        invitation = Invitation(email=signup.email, display_name=signup.display_name, options=options)
        held = [signup]

        async def fence() -> None:
            """Right before each POST: the address is still ours, and the lease is taken (conditionally)."""
            if not await self._admission.holds_claim(held[0]):
                raise ClaimLost(held[0].id)
            now = self._clock()
            lease_until = now + timedelta(seconds=self._timers.lease)
            held[0] = await self._write(
                held[0],
                Event.CLAIM,
                attempts=held[0].attempts + 1,
                lease_until=lease_until,
                due_at=lease_until,
                maybe_invited=True,
                last_attempt_at=now,
                directory_before=before,
                existing_user_id=existing,
            )

        try:
            result = await self._directory.invite(invitation, fence=fence)
        except PermanentGraphError as exc:
            claimed = held[0]
            log.warning(
                "worker.refused signup_id=%s attempt=%s code=%s status=%s request_id=%s",
                claimed.id,
                claimed.attempts,
                exc.code,
                exc.status,
                exc.request_id,
            )
            if silent:
                # The guest is in the directory (ours or from before) and Graph refused a silent re-invite.
                await self._finish(claimed, Event.INVITED, self._invited(None, existing, None, mailed=None))
                return Outcome.INVITED
            return await self._refuse(claimed, exc.code, "permanent", exc)
        except AmbiguousGraphError as exc:
            return await self._retry(held[0], exc, maybe_invited=True)
        except TransientGraphError as exc:
            # Nothing was sent by this attempt (or the pacer deferred it before the fence).
            return await self._retry(held[0], exc, maybe_invited=in_doubt)
        except ClaimLost:
            log.error("worker.claim_lost signup_id=%s (another request holds the address)", signup.id)
            return await self._fault(held[0], RuntimeError("the address claim names another request"))
        except ConcurrencyConflict:
            raise
        except Exception as exc:
            log.exception("worker.internal_error signup_id=%s attempt=%s", held[0].id, held[0].attempts)
            return await self._fault(held[0], exc)
        claimed = held[0]
        await self._finish(
            claimed,
            Event.INVITED,
            self._invited(
                result.invitation_id,
                result.invited_user_id,
                result.status,
                mailed=options.send_message,
                redeem_url=result.redeem_url,
                request_id=result.request_id,
            ),
        )
        log.info(
            "worker.invited signup_id=%s attempt=%s invitation_status=%s mailed=%s domain=%s",
            claimed.id,
            claimed.attempts,
            result.status,
            options.send_message,
            claimed.domain,
        )
        return Outcome.INVITED

    async def _convert(self, signup: Signup, request: dict[str, Any]) -> Outcome:
        """A conversion (``POST /api/manage/conversions``): the pre-checks, then ``invitedUser.id``.

        The same lease, retries and one-mail rule as a sign-up: after an attempt that may have
        acted, the user found external means that attempt converted it, and nothing is sent again.
        """
        from ..conversion import Code, ConversionOptions, Converter, after_lost_answer

        options = ConversionOptions.from_json(request)
        converter = Converter(self._directory, self._options, priority="normal")
        try:
            verdict = await converter.check(str(request["user"]), request.get("email"))
        except PermanentGraphError as exc:
            if signup.maybe_invited:
                return await self._retry(signup, exc, maybe_invited=True)
            return await self._refuse(signup, exc.code, "permanent", exc)
        except (TransientGraphError, AmbiguousGraphError) as exc:
            return await self._retry(signup, exc, maybe_invited=signup.maybe_invited)
        user = verdict.user
        if verdict.code is Code.ALREADY_EXTERNAL and signup.maybe_invited and user is not None:
            try:  # the earlier attempt converted: finish what it left (userType, a redeem URL for the mail)
                done = await after_lost_answer(converter, user, options)
            except PermanentGraphError as exc:
                return await self._converted_not_settled(signup, user.id, exc)
            except GraphError as exc:
                return await self._retry(signup, exc, maybe_invited=True)
            await self._finish(
                signup,
                Event.INVITED,
                self._invited(None, user.id, done.status, mailed=options.send_message, redeem_url=done.redeem_url),
            )
            log.info("worker.converted_before signup_id=%s", signup.id)
            return Outcome.INVITED
        if not verdict.eligible or user is None:
            await self._refuse(signup, verdict.code.value, "conversion", error_detail=verdict.reason)
            log.info("worker.conversion_refused signup_id=%s code=%s", signup.id, verdict.code.value)
            return Outcome.FAILED
        held = [signup]

        async def fence() -> None:
            """Right before each POST (after the pacer's waits): the lease, taken with a conditional write."""
            now = self._clock()
            lease_until = now + timedelta(seconds=self._timers.lease)
            held[0] = await self._write(
                held[0],
                Event.CLAIM,
                email=user.mail or "",
                display_name=user.user_principal_name or user.id,
                attempts=held[0].attempts + 1,
                lease_until=lease_until,
                due_at=lease_until,
                maybe_invited=True,
                last_attempt_at=now,
                directory_before=DirectoryBefore.MEMBER,
                existing_user_id=user.id,
            )

        try:
            result = await converter.convert(verdict, options, fence=fence)
        except PermanentGraphError as exc:
            claimed = held[0]
            return await self._refuse(claimed, exc.code, "permanent", exc, maybe_invited=signup.maybe_invited)
        except AmbiguousGraphError as exc:
            return await self._retry(held[0], exc, maybe_invited=True)
        except TransientGraphError as exc:
            return await self._retry(held[0], exc, maybe_invited=signup.maybe_invited)
        claimed = held[0]
        detail = verdict.reason if verdict.synced else None
        try:
            await converter.settle(user, options)
        except PermanentGraphError as exc:
            return await self._converted_not_settled(claimed, user.id, exc, result.invitation_id)
        except GraphError as exc:  # converted, userType not yet: the next delivery finds it external and settles
            return await self._retry(claimed, exc, maybe_invited=True)
        await self._finish(
            claimed,
            Event.INVITED,
            self._invited(
                result.invitation_id,
                user.id,
                result.status,
                mailed=options.send_message,
                redeem_url=result.redeem_url,
                request_id=result.request_id,
            ),
            error_detail=detail,
        )
        log.info("worker.converted signup_id=%s attempt=%s", claimed.id, claimed.attempts)
        return Outcome.INVITED

    async def _converted_not_settled(
        self, signup: Signup, user_id: str, exc: PermanentGraphError, invitation_id: str | None = None
    ) -> Outcome:
        """Converted, but Graph refused the asked-for ``userType`` change for good (a 403, a 400): ``failed``
        at once with Graph's code, not retried until the deadline. The user is known converted, so there is no
        doubt left; the detail says so, and an admin finishes with ``signup-admin convert`` or the portal."""
        changes = self._failure(exc.code or "Refused", "permanent", exc)
        changes["error_detail"] = f"converted; userType not changed: {changes['error_detail']}"[:1000]
        await self._finish(
            signup,
            Event.REFUSED,
            {**changes, "maybe_invited": False, "invited_user_id": user_id, "invitation_id": invitation_id},
        )
        log.warning("worker.user_type_refused signup_id=%s code=%s", signup.id, exc.code)
        return Outcome.FAILED

    async def _options_for(self, signup: Signup) -> InvitationOptions:
        """The invitation options of the sign-up's policy profile, or the settings' options.

        Microsoft's mail is in the language the requester used on the page, unless the profile fixes one.
        """
        options, profile = self._options, None
        if signup.policy_profile is not None and self._policy is not None:
            profile = (await self._policy.current()).profile(signup.policy_profile)
            if profile is None:
                # The policy changed since intake decided; the decision stands, with the general options.
                log.warning("worker.profile_gone signup_id=%s profile=%s", signup.id, signup.policy_profile)
            else:
                options = profile.invitation_options(options)
        if signup.language and not (profile is not None and profile.message_language):
            options = dataclasses.replace(options, message_language=signup.language)
        return options

    async def _retry(self, signup: Signup, exc: GraphError | None, *, maybe_invited: bool) -> Outcome:
        """Record the failure and re-enqueue for the next due time; past the deadline, ``doubt.give_up``."""
        now = self._clock()
        delay = self._timers.backoff(max(1, signup.attempts), self._jitter())
        if exc is None or isinstance(exc, AmbiguousGraphError):
            delay = max(delay, self._timers.ambiguous_delay)
        delay = max(delay, (exc.retry_after if exc else None) or 0.0)
        due = now + timedelta(seconds=delay)
        code = exc.code if exc is not None else (signup.error_code or "InvitationInDoubt")
        if due >= signup.deadline:
            detail = self._detail(exc) if exc is not None else None
            signup = dataclasses.replace(signup, maybe_invited=maybe_invited)
            log.warning("worker.gave_up signup_id=%s attempts=%s code=%s", signup.id, signup.attempts, code)
            return await self._end(signup, code, "transient", detail=detail, maybe_invited=maybe_invited)
        await self._write(
            signup,
            Event.RETRY,
            lease_until=None,
            due_at=due,
            maybe_invited=maybe_invited,
            error_code=code,
            error_detail=self._detail(exc) if exc is not None else signup.error_detail,
            graph_request_id=exc.request_id if exc is not None else signup.graph_request_id,
        )
        await self._queue.enqueue(signup.id, delay)
        log.warning(
            "worker.retry_scheduled signup_id=%s attempt=%s code=%s kind=%s delay=%.1f",
            signup.id,
            signup.attempts,
            code,
            type(exc).__name__,
            delay,
        )
        return Outcome.RESCHEDULED

    async def _end(self, signup: Signup, code: str, kind: str, **more: Any) -> Outcome:
        """End ``signup`` by the doubt rule: failed, a later directory read, or unknown past the cap."""
        now = self._clock()
        if "maybe_invited" in more:
            signup = dataclasses.replace(signup, maybe_invited=more["maybe_invited"])
        event, changes = doubt.give_up(signup, now, self._timers, code=code, kind=kind, jitter=self._jitter(), **more)
        if event is Event.RETRY:
            written = await self._write(signup, event, **changes)
            delay = max(0.0, (written.due_at - now).total_seconds()) if written.due_at else 0.0
            await self._queue.enqueue(signup.id, delay)
            log.warning("worker.in_doubt signup_id=%s code=%s read_in=%.0f", signup.id, code, delay)
            return Outcome.RESCHEDULED
        await self._finish(signup, event, changes)
        return Outcome.FAILED

    async def _refuse(
        self, signup: Signup, code: str | None, kind: str, exc: BaseException | None = None, **more: Any
    ) -> Outcome:
        """A permanent refusal of this attempt (Graph did not act): failed, unless an earlier one may have."""
        more.setdefault("maybe_invited", False)
        changes = self._failure(code or "Refused", kind, exc)
        if more["maybe_invited"]:
            return await self._end(signup, code or "Refused", kind, **more)
        if kind == "member" and signup.conversion is None and self._follow_ups is not None:
            # The public view shows a completed request; only the address's owner is told, by one mail.
            signup, mail = await self._follow_ups.existing_account_mail(signup)
            more = {**mail, **more}
        await self._finish(signup, Event.REFUSED, {**changes, **more})
        return Outcome.FAILED

    async def _fault(self, signup: Signup, exc: BaseException) -> Outcome:
        """An unexpected exception: retry a few times (it may have acted), then end by the doubt rule."""
        faults = signup.faults + 1
        if faults >= MAX_FAULTS:
            return await self._end(signup, "InternalError", "internal", faults=faults, detail=self._detail(exc))
        delay = self._timers.backoff(faults, self._jitter())
        await self._write(
            signup,
            Event.RETRY,
            lease_until=None,
            due_at=self._clock() + timedelta(seconds=delay),
            maybe_invited=True,
            faults=faults,
            error_code="InternalError",
            error_detail=self._detail(exc),
        )
        await self._queue.enqueue(signup.id, delay)
        return Outcome.RESCHEDULED

    async def finalise_poisoned(self, signup_id: str) -> Outcome:
        """The host gave up on a message: re-enqueue what can still finish, end the rest. Never raises."""
        try:
            for _ in range(MAX_CONFLICT_ROUNDS):
                signup = await self._store.get(signup_id)
                if signup is None:
                    return Outcome.MISSING
                if signup.status.terminal:
                    return Outcome.ALREADY_DONE
                if signup.status is Status.PENDING_APPROVAL:
                    return Outcome.NOT_ADMITTED
                now = self._clock()
                faults = signup.faults + 1
                try:
                    if faults >= MAX_FAULTS or now >= signup.deadline:
                        if signup.status is Status.INVITING and signup.lease_until and signup.lease_until > now:
                            await self._queue.enqueue(signup_id, (signup.lease_until - now).total_seconds() + 1)
                            return Outcome.RESCHEDULED
                        outcome = await self._end(signup, "DeliveryExhausted", "poisoned", faults=faults)
                        log.warning("worker.poisoned signup_id=%s attempts=%s", signup_id, signup.attempts)
                        return outcome
                    await self._write(signup, Event.STEP, faults=faults)
                except ConcurrencyConflict:
                    continue
                wake = self._wake_time(signup, now)
                await self._queue.enqueue(signup_id, (wake - now).total_seconds() if wake else 0.0)
                log.warning("worker.poison_requeued signup_id=%s faults=%s", signup_id, faults)
                return Outcome.RESCHEDULED
        except Exception:
            # Raising would only move the message to a second poison queue that nothing reads;
            # the due index (or the record's own time bucket) brings the sign-up to the sweeper instead.
            log.exception("worker.poison_unhandled signup_id=%s", signup_id)
        return Outcome.RESCHEDULED

    def _failure(self, code: str, kind: str, exc: BaseException | None = None) -> dict[str, Any]:
        return doubt.failure(
            code, kind, self._detail(exc) if exc is not None else None, getattr(exc, "request_id", None)
        )

    @staticmethod
    def _invited(
        invitation_id: str | None,
        user_id: str | None,
        status: str | None,
        *,
        mailed: bool | None,
        redeem_url: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "invitation_id": invitation_id,
            "invited_user_id": user_id,
            "invitation_status": status,
            "invitation_mailed": mailed,
            "redeem_url": redeem_url,
            "graph_request_id": request_id,
            "error_code": None,
            "error_message": None,
            "error_detail": None,
            "maybe_invited": False,
        }

    @staticmethod
    def _detail(exc: BaseException) -> str:
        status = getattr(exc, "status", None)
        return (f"{type(exc).__name__}: {exc}" + (f" (HTTP {status})" if status else ""))[:1000]

    async def _finish(self, signup: Signup, event: Event, changes: dict[str, Any], **more: Any) -> None:
        """Write a final state (no lease, not due); ``invited_at`` for invitations.

        An invitation opens its profile's steps (groups, the organisation's mail): they are
        written with it, due at once, and run in this same delivery.
        """
        now = self._clock()
        final = {**changes, **more, "lease_until": None, "due_at": None}
        final.pop("detail", None)
        invited = event is Event.INVITED
        if invited:
            final["invited_at"] = now
            if self._follow_ups is not None:
                final.update(await self._follow_ups.invited_steps(signup.evolve(status=Status.INVITED, **final)))
                if signup.evolve(status=Status.INVITED, **final).follow_up_open:
                    final["due_at"] = now  # the sweeper's view: work left, due now
        written = await self._write(signup, event, **final)
        telemetry.count("signup.final", status=written.status.value, code=written.error_code or "")
        if invited and self._guests is not None:
            try:
                await self._guests.record_invited(written)
            except StorageError:
                # The invitation stands; shared.guests.backfill registers it later.
                log.warning("worker.guest_not_registered signup_id=%s", written.id)
        if invited:
            telemetry.record("signup.time_to_invite", (now - written.created_at).total_seconds(), "s")
            telemetry.record("signup.attempts", written.attempts, "1")
        if self._audit is not None:
            detail = {"code": written.error_code} if written.error_code else {"mailed": written.invitation_mailed}
            await self._audit.append(AuditEntry(signup.id, now, written.status.value, "worker", detail))
        if self._follow_ups is not None and written.follow_up_open:
            await self._follow_ups.run(written)

    async def _write(self, signup: Signup, event: Event, **changes: Any) -> Signup:
        """A declared, ETag-conditional write of ``changes`` over ``signup`` as read (``writes.write``)."""
        return await write(self._store, signup, event, clock=self._clock, **changes)
