"""The invitation worker: an explicit state machine over the sign-up's Table entity.

One queue delivery runs ``process``; every write is ETag-conditional and a lost
race re-reads and decides again::

    read ──► missing / invited / failed / linked / denied / expired ► done (nothing to do)
      ├───► pending_approval ─────────────────────────────────► done (waits for an approver)
      ├───► inviting, lease live ─────────────────────────────► re-enqueue for the lease's end
      ├───► retrying, not due yet ────────────────────────────► re-enqueue for the due time
      ├───► past the deadline ────────────────────────────────► failed (last transient code)
      └───► queued, retrying and due, or inviting with the lease expired:
              an address in one of the tenant's verified domains ─► failed (TenantDomain)
              read the directory first when nothing is known yet, or when an
              earlier attempt may have acted (maybe_invited):
                 a member of this tenant ─────────────────────► failed (ExistingMember)
                 a guest who already redeemed ────────────────► invited (no write, no mail)
              claim: inviting, attempts+1, lease, maybe_invited=true
              POST /invitations (once per claim; silently, sendInvitationMessage=false,
                                 when an earlier attempt may have mailed already)
                 ├── success ─────────────────────────────────► invited (ids, redeem URL)
                 ├── permanent ───────────────────────────────► failed (Graph's code)
                 ├── transient (Graph did not act) ───────────► retrying (maybe_invited as before)
                 └── ambiguous (Graph may have acted) ────────► retrying (maybe_invited=true)

A retry is scheduled here, not by the host: the record gets the next due time
(exponential backoff with jitter, capped) and the message is re-enqueued with
that visibility delay; the delivery then completes normally.

A sign-up that names a policy profile is invited with that profile's redirect
URL, user type, language and sponsors (``Profile.invitation_options`` over the
settings' options); without one, or when the profile is gone from the policy,
with the settings' options. The host's
``maxDequeueCount`` and the poison queue remain only for crashes and bugs:
``finalise_poisoned`` re-enqueues what can still finish and never raises. What a
lost message or a dead worker leaves behind, the sweeper finds in the due index.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from ..audit import AuditEntry, AuditLog
from ..errors import (
    AmbiguousGraphError,
    ConcurrencyConflict,
    GraphError,
    PermanentGraphError,
    TransientGraphError,
)
from ..graph.directory import Directory, DirectoryUser, Invitation, InvitationOptions
from ..policy import PolicySource
from .intake import Timers
from .models import DirectoryBefore, Signup, Status, Step, new_write_token, utcnow
from .queue import SignupQueue
from .store import SignupStore

log = logging.getLogger(__name__)

MAX_CONFLICT_ROUNDS: Final = 5
MAX_FAULTS: Final = 3  # unexpected exceptions or poisonings before a sign-up is given up
EARLY_TOLERANCE: Final = timedelta(seconds=1)
PUBLIC_MESSAGES: Final = {
    "permanent": "The directory refused the invitation.",
    "member": "This address belongs to an account of the organisation; it cannot be invited as a guest.",
    "transient": "The directory could not be reached in time; the sign-up was not completed.",
    "internal": "The sign-up could not be processed.",
    "poisoned": "The sign-up could not be processed after repeated attempts.",
    "conversion": "The account does not meet the conditions for conversion to a B2B user.",
}


class FollowUpRunner(Protocol):
    """The steps around an invitation (``shared.onboarding.FollowUps``)."""

    async def invited_steps(self, signup: Signup) -> dict[str, Any]:
        """The steps an invitation opens, as record changes."""
        ...

    async def run(self, signup: Signup) -> Signup:
        """Do the open steps; raises ``ConcurrencyConflict`` when the record changed underneath."""
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
    """Drives one sign-up from ``queued`` to ``invited`` or ``failed``, scheduling its own retries."""

    def __init__(
        self,
        store: SignupStore,
        queue: SignupQueue,
        directory: Directory,
        options: InvitationOptions,
        timers: Timers,
        *,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
        policy: PolicySource | None = None,
        follow_ups: FollowUpRunner | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._store = store
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
        """Handle one delivery. Raises only when storage fails (the host then redelivers)."""
        for _ in range(MAX_CONFLICT_ROUNDS):
            signup = await self._store.get(signup_id)
            if signup is None:
                log.warning("worker.missing signup_id=%s", signup_id)
                return Outcome.MISSING
            now = self._clock()
            if self._follow_ups is not None and self._has_steps(signup):
                retry_due = signup.due_at if signup.followup_attempts else None  # a scheduled retry of a step
                if retry_due is not None and retry_due > now + EARLY_TOLERANCE:
                    await self._queue.enqueue(signup_id, (retry_due - now).total_seconds())
                    return Outcome.RESCHEDULED
                try:
                    await self._follow_ups.run(signup)
                except ConcurrencyConflict:
                    log.info("worker.conflict signup_id=%s", signup_id)
                    continue
                return Outcome.FOLLOWED_UP
            if signup.status.terminal:
                log.info("worker.already_done signup_id=%s status=%s", signup_id, signup.status.value)
                return Outcome.ALREADY_DONE
            if signup.status is Status.PENDING_APPROVAL:
                log.info("worker.not_admitted signup_id=%s", signup_id)
                return Outcome.NOT_ADMITTED
            wake = self._wake_time(signup, now)
            if wake is not None:
                await self._queue.enqueue(signup_id, (wake - now).total_seconds())
                log.info(
                    "worker.not_yet signup_id=%s status=%s wake_in=%.0f",
                    signup_id,
                    signup.status.value,
                    (wake - now).total_seconds(),
                )
                return Outcome.RESCHEDULED
            try:
                if now >= signup.deadline:
                    await self._finish(signup, self._failure(signup.error_code or "DeadlineExceeded", "transient"))
                    log.warning("worker.deadline signup_id=%s attempts=%s", signup_id, signup.attempts)
                    return Outcome.FAILED
                return await self._attempt(signup)
            except ConcurrencyConflict:
                log.info("worker.conflict signup_id=%s", signup_id)
        await self._queue.enqueue(signup_id, 1.0)
        return Outcome.RESCHEDULED

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

    async def _attempt(self, signup: Signup) -> Outcome:
        if signup.conversion is not None:
            return await self._convert(signup, signup.conversion)
        before, existing = signup.directory_before, signup.existing_user_id
        silent = False
        if before is None:
            # The tenant's own verified domains hold members, never guests: refuse before any write.
            try:
                tenant_domain = signup.domain in await self._directory.verified_domains()
            except PermanentGraphError as exc:
                await self._finish(signup, self._failure(exc.code, "permanent", exc))
                return Outcome.FAILED
            except (TransientGraphError, AmbiguousGraphError) as exc:
                return await self._retry(signup, exc, maybe_invited=signup.maybe_invited)
            if tenant_domain:
                log.warning("worker.tenant_domain signup_id=%s domain=%s", signup.id, signup.domain)
                await self._finish(signup, self._failure("TenantDomain", "member"))
                return Outcome.FAILED
        if before is None or signup.maybe_invited:
            try:
                now_state, user_id = directory_state(
                    await self._directory.find_users_by_email(signup.email), signup.email
                )
            except PermanentGraphError as exc:
                await self._finish(signup, self._failure(exc.code, "permanent", exc))
                return Outcome.FAILED
            except (TransientGraphError, AmbiguousGraphError) as exc:
                return await self._retry(signup, exc, maybe_invited=signup.maybe_invited)
            if before is None:
                before, existing = now_state, user_id
                if before is DirectoryBefore.MEMBER:
                    log.warning("worker.member_address signup_id=%s domain=%s", signup.id, signup.domain)
                    await self._finish(
                        signup,
                        self._failure("ExistingMember", "member"),
                        directory_before=before,
                        existing_user_id=existing,
                    )
                    return Outcome.FAILED
                if before is DirectoryBefore.GUEST_ACCEPTED:
                    # Already a guest who redeemed: no invitation, no mail. README: "Repeat sign-ups".
                    await self._finish(
                        signup,
                        self._invited(None, existing, "Accepted", mailed=False),
                        directory_before=before,
                        existing_user_id=existing,
                    )
                    log.info("worker.existing_guest signup_id=%s domain=%s", signup.id, signup.domain)
                    return Outcome.INVITED
            if signup.maybe_invited:
                # Graph acted if the guest appeared since; for a guest who existed already we cannot
                # tell, so we assume it did. Either way a silent re-invite recovers the redeem URL.
                silent = before is not DirectoryBefore.ABSENT or now_state is not DirectoryBefore.ABSENT
        options = await self._options_for(signup)
        claimed = await self._claim(signup, before, existing)
        options = dataclasses.replace(options, send_message=False) if silent else options
        invitation = Invitation(email=signup.email, display_name=signup.display_name, options=options)
        try:
            result = await self._directory.invite(invitation)
        except PermanentGraphError as exc:
            log.warning(
                "worker.refused signup_id=%s attempt=%s code=%s status=%s request_id=%s",
                claimed.id,
                claimed.attempts,
                exc.code,
                exc.status,
                exc.request_id,
            )
            await self._finish(claimed, self._failure(exc.code, "permanent", exc))
            return Outcome.FAILED
        except AmbiguousGraphError as exc:
            return await self._retry(claimed, exc, maybe_invited=True)
        except TransientGraphError as exc:
            return await self._retry(claimed, exc, maybe_invited=signup.maybe_invited)
        except Exception as exc:
            log.exception("worker.internal_error signup_id=%s attempt=%s", claimed.id, claimed.attempts)
            return await self._fault(claimed, exc)
        await self._finish(
            claimed,
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
            await self._finish(signup, self._failure(exc.code, "permanent", exc))
            return Outcome.FAILED
        except (TransientGraphError, AmbiguousGraphError) as exc:
            return await self._retry(signup, exc, maybe_invited=signup.maybe_invited)
        user = verdict.user
        if verdict.code is Code.ALREADY_EXTERNAL and signup.maybe_invited and user is not None:
            try:  # the earlier attempt converted: finish what it left (userType, a redeem URL for the mail)
                done = await after_lost_answer(converter, user, options)
            except GraphError as exc:
                return await self._retry(signup, exc, maybe_invited=True)
            await self._finish(
                signup,
                self._invited(None, user.id, done.status, mailed=options.send_message, redeem_url=done.redeem_url),
            )
            log.info("worker.converted_before signup_id=%s", signup.id)
            return Outcome.INVITED
        if not verdict.eligible or user is None:
            await self._finish(signup, self._failure(verdict.code.value, "conversion"), error_detail=verdict.reason)
            log.info("worker.conversion_refused signup_id=%s code=%s", signup.id, verdict.code.value)
            return Outcome.FAILED
        claimed = await self._claim(
            signup.evolve(email=user.mail or "", display_name=user.user_principal_name or user.id),
            DirectoryBefore.MEMBER,
            user.id,
        )
        try:
            result = await converter.convert(verdict, options)
        except PermanentGraphError as exc:
            await self._finish(claimed, self._failure(exc.code, "permanent", exc))
            return Outcome.FAILED
        except AmbiguousGraphError as exc:
            return await self._retry(claimed, exc, maybe_invited=True)
        except TransientGraphError as exc:
            return await self._retry(claimed, exc, maybe_invited=signup.maybe_invited)
        detail = verdict.reason if verdict.synced else None
        try:
            await converter.settle(user, options)
        except GraphError as exc:  # converted, userType not yet: the next delivery finds it external and settles
            return await self._retry(claimed, exc, maybe_invited=True)
        await self._finish(
            claimed,
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

    async def _claim(self, signup: Signup, before: DirectoryBefore | None, existing: str | None) -> Signup:
        """Take the lease: only the holder of a live lease calls Graph."""
        now = self._clock()
        lease_until = now + timedelta(seconds=self._timers.lease)
        return await self._write(
            signup,
            status=Status.INVITING,
            attempts=signup.attempts + 1,
            lease_until=lease_until,
            due_at=lease_until,
            maybe_invited=True,
            directory_before=before,
            existing_user_id=existing,
        )

    async def _retry(self, signup: Signup, exc: GraphError, *, maybe_invited: bool) -> Outcome:
        """Record the transient failure and re-enqueue for the next due time, or fail past the deadline."""
        now = self._clock()
        delay = self._timers.backoff(max(1, signup.attempts), self._jitter())
        if isinstance(exc, AmbiguousGraphError):
            delay = max(delay, self._timers.ambiguous_delay)
        delay = max(delay, exc.retry_after or 0.0)
        due = now + timedelta(seconds=delay)
        if due >= signup.deadline:
            await self._finish(signup, self._failure(exc.code, "transient", exc), maybe_invited=maybe_invited)
            log.warning("worker.gave_up signup_id=%s attempts=%s code=%s", signup.id, signup.attempts, exc.code)
            return Outcome.FAILED
        await self._write(
            signup,
            status=Status.RETRYING,
            lease_until=None,
            due_at=due,
            maybe_invited=maybe_invited,
            error_code=exc.code,
            error_detail=self._detail(exc),
            graph_request_id=exc.request_id,
        )
        await self._queue.enqueue(signup.id, delay)
        log.warning(
            "worker.retry_scheduled signup_id=%s attempt=%s code=%s kind=%s delay=%.1f",
            signup.id,
            signup.attempts,
            exc.code,
            type(exc).__name__,
            delay,
        )
        return Outcome.RESCHEDULED

    async def _fault(self, signup: Signup, exc: BaseException) -> Outcome:
        """An unexpected exception: retry a few times (it may have acted), then give up."""
        faults = signup.faults + 1
        if faults >= MAX_FAULTS:
            await self._finish(signup, self._failure("InternalError", "internal", exc), faults=faults)
            return Outcome.FAILED
        delay = self._timers.backoff(faults, self._jitter())
        await self._write(
            signup,
            status=Status.RETRYING,
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
        """The host gave up on a message: re-enqueue what can still finish, fail the rest. Never raises."""
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
                        await self._finish(signup, self._failure("DeliveryExhausted", "poisoned"), faults=faults)
                        log.warning("worker.poisoned signup_id=%s attempts=%s", signup_id, signup.attempts)
                        return Outcome.FAILED
                    await self._write(signup, faults=faults)
                except ConcurrencyConflict:
                    continue
                wake = self._wake_time(signup, now)
                await self._queue.enqueue(signup_id, (wake - now).total_seconds() if wake else 0.0)
                log.warning("worker.poison_requeued signup_id=%s faults=%s", signup_id, faults)
                return Outcome.RESCHEDULED
        except Exception:
            # Raising would only move the message to a second poison queue that nothing reads;
            # the due index brings the sign-up to the sweeper instead.
            log.exception("worker.poison_unhandled signup_id=%s", signup_id)
        return Outcome.RESCHEDULED

    def _failure(self, code: str, kind: str, exc: BaseException | None = None) -> dict[str, Any]:
        return {
            "status": Status.FAILED,
            "error_code": code,
            "error_message": PUBLIC_MESSAGES[kind],
            "error_detail": self._detail(exc) if exc is not None else None,
            "graph_request_id": getattr(exc, "request_id", None),
        }

    @staticmethod
    def _invited(
        invitation_id: str | None,
        user_id: str | None,
        status: str | None,
        *,
        mailed: bool,
        redeem_url: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "status": Status.INVITED,
            "invitation_id": invitation_id,
            "invited_user_id": user_id,
            "invitation_status": status,
            "invitation_mailed": mailed,
            "redeem_url": redeem_url,
            "graph_request_id": request_id,
            "error_code": None,
            "error_message": None,
            "error_detail": None,
        }

    @staticmethod
    def _detail(exc: BaseException) -> str:
        status = getattr(exc, "status", None)
        return (f"{type(exc).__name__}: {exc}" + (f" (HTTP {status})" if status else ""))[:1000]

    async def _finish(self, signup: Signup, changes: dict[str, Any], **more: Any) -> None:
        """Write a final state (no lease, not due); ``invited_at`` for invitations.

        An invitation opens its profile's steps (groups, the organisation's mail): they are
        written with it, due at once, and run in this same delivery.
        """
        now = self._clock()
        final = {**changes, **more, "lease_until": None, "due_at": None}
        invited = final["status"] is Status.INVITED
        if invited:
            final["invited_at"] = now
            if self._follow_ups is not None:
                final.update(await self._follow_ups.invited_steps(signup.evolve(**final)))
                if signup.evolve(**final).follow_up_open:
                    final["due_at"] = now  # the sweeper's view: work left, due now
        written = await self._write(signup, **final)
        if self._audit is not None:
            detail = {"code": written.error_code} if written.error_code else {"mailed": bool(written.invitation_mailed)}
            await self._audit.append(AuditEntry(signup.id, now, written.status.value, "worker", detail))
        if self._follow_ups is not None and written.follow_up_open:
            await self._follow_ups.run(written)

    async def _write(self, signup: Signup, **changes: Any) -> Signup:
        """An ETag write of ``changes`` over ``signup`` as read.

        A conflict raises ``ConcurrencyConflict`` and the caller reads again and decides
        again, unless the fresh record carries this write's token: then the write landed
        and storage reported a conflict only because the SDK retried it.
        """
        intended = signup.evolve(updated_at=self._clock(), write_token=new_write_token(), **changes)
        try:
            return await self._store.replace(intended)
        except ConcurrencyConflict:
            fresh = await self._store.get(signup.id)
            if fresh is not None and fresh.write_token == intended.write_token:
                return fresh
            log.info("worker.write_conflict signup_id=%s wanted=%s", signup.id, changes.get("status"))
            raise
