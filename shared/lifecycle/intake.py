"""Intake: record a validated sign-up, give its address one owner, and queue it.

``Intake.submit`` writes the record and its due-index entry (both durable before
anything points at the record), then ``Admission.admit`` settles who owns the
address's invitation, with a conditional insert on the address's claim entity
rather than a read-then-write:

* nobody owns it, or the owner failed, vanished or was invited longer ago than
  the repeat window: this sign-up takes the claim (ETag-conditional) and is
  queued;
* the owner is still pending, or was invited within the window: this sign-up is
  ``linked`` to it, creates no invitation, and its public status is the owner's.

If any step fails the record is deleted again and the caller answers 503. A
claim left pointing at a deleted record is harmless: the next sign-up for the
address finds its owner missing and takes over. Every caller gets the same 202,
so the answer reveals nothing a fresh request would not.

Before anything is written the policy decides (``shared.policy``):

* ``deny`` (a blocked domain, or an unknown one under ``defaultAction: deny``):
  the refusal is recorded as ``denied`` (no index entry, no claim, no message)
  and ``SignupForbidden`` is raised (403, saying nothing of the policy);
* ``review``: the record is written as ``pending_approval`` and nothing more (no
  claim yet: approval admits it later), and the caller answers 202 with that status;
* ``approve``: recorded, claimed and queued as above.

The record keeps the matched profile (``policy_profile``) and the decision
(``policy_action``, ``policy_reason``), so the worker invites with the
profile's options and admins see why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ..audit import AuditEntry, AuditLog
from ..errors import ConcurrencyConflict, SignupForbidden, StorageError, ValidationFailed
from ..policy import Action, Decision, FixedPolicy, PolicySource
from ..policy.document import NO_POLICY
from .models import Signup, Status, Step, is_signup_id, new_signup_id, utcnow
from .queue import SignupQueue
from .store import AddressBook, DueEntry, DueIndex, SignupStore, address_key, bucket_of
from .validation import SignupForm

if TYPE_CHECKING:
    from ..approval.denials import DenialMemory

log = logging.getLogger(__name__)

MAX_CLAIM_ROUNDS: Final = 8


@dataclass(frozen=True)
class Timers:
    """The lifecycle's timers, in seconds (from settings)."""

    retry_initial: float = 10.0
    retry_max: float = 300.0
    deadline: float = 86400.0
    repeat_window: float = 86400.0
    queued_grace: float = 600.0
    lease: float = 150.0
    # Graph's directory is eventually consistent: a guest created by a lost-answer
    # invitation may take seconds to show in $filter reads, so wait at least this long.
    ambiguous_delay: float = 30.0

    def backoff(self, attempt: int, jitter: float) -> float:
        """Exponential backoff for the ``attempt``-th retry, capped; ``jitter`` in [0, 1) spreads it."""
        ceiling = min(self.retry_max, self.retry_initial * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + ceiling / 2 * jitter


class Admission:
    """Gives an address's invitation one owner at a time and queues the owner."""

    def __init__(
        self,
        store: SignupStore,
        addresses: AddressBook,
        index: DueIndex,
        queue: SignupQueue,
        timers: Timers,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._addresses = addresses
        self._index = index
        self._queue = queue
        self._timers = timers
        self._clock = clock

    def blocks(self, owner: Signup, now: datetime) -> bool:
        """True when ``owner`` still stands for the address: pending, or invited within the window."""
        if owner.status in {Status.QUEUED, Status.INVITING, Status.RETRYING}:
            return True
        window = timedelta(seconds=self._timers.repeat_window)
        return owner.status is Status.INVITED and owner.invited_at is not None and now - owner.invited_at < window

    async def owner_for(self, signup: Signup) -> str | None:
        """Claim the address for ``signup``; None when it owns it now, else the id of the owner it follows."""
        key = address_key(signup.email)
        for _ in range(MAX_CLAIM_ROUNDS):
            if await self._addresses.insert(key, signup.id):
                return None
            claim = await self._addresses.get(key)
            if claim is None:
                continue
            if claim.signup_id == signup.id:
                return None
            owner = await self._store.get(claim.signup_id)
            if owner is not None and self.blocks(owner, self._clock()):
                return owner.id
            if await self._addresses.take_over(claim, signup.id):
                return None
        raise StorageError(f"the address claim for sign-up {signup.id} kept changing")

    async def admit(self, signup: Signup, *, fresh: bool) -> Signup:
        """Own the address and queue ``signup``, or link it to the owner. ``fresh``: just created as queued."""
        owner = await self.owner_for(signup)
        now = self._clock()
        if owner is not None:
            linked = signup.evolve(status=Status.LINKED, linked_to=owner, due_at=None, updated_at=now)
            log.info("intake.linked signup_id=%s owner_id=%s domain=%s", signup.id, owner, signup.domain)
            return await self._store.replace(linked)
        if not fresh:
            due = now + timedelta(seconds=self._timers.queued_grace)
            signup = await self._store.replace(
                signup.evolve(
                    status=Status.QUEUED,
                    linked_to=None,
                    due_at=due,
                    deadline=now + timedelta(seconds=self._timers.deadline),
                    lease_until=None,
                    error_code=None,
                    error_message=None,
                    error_detail=None,
                    faults=0,
                    updated_at=now,
                )
            )
            await self._index.add(DueEntry(bucket_of(due), signup.id))
        await self._queue.enqueue(signup.id)
        return signup


class Intake:
    """Accepts sign-ups and answers status queries."""

    def __init__(
        self,
        store: SignupStore,
        admission: Admission,
        index: DueIndex,
        timers: Timers,
        *,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_signup_id,
        policy: PolicySource | None = None,
        denials: DenialMemory | None = None,
        audit: AuditLog | None = None,
        queue: SignupQueue | None = None,
        approver_step: Callable[[str | None], Awaitable[Step | None]] | None = None,
        pending_expiry: float = 14 * 86400.0,
    ) -> None:
        self._store = store
        self._denials = denials
        self._audit = audit
        self._queue = queue
        self._approver_step = approver_step
        self._pending_expiry = pending_expiry
        self._policy = policy or FixedPolicy(NO_POLICY)
        self._admission = admission
        self._index = index
        self._timers = timers
        self._clock = clock
        self._new_id = new_id

    async def submit(self, form: SignupForm) -> Signup:
        """Decide by the policy; record, claim and enqueue ``form`` if approved.

        Raises ``SignupForbidden`` (refusal recorded) when the policy denies it, and
        ``StorageError`` (nothing kept) if any step fails.
        """
        decision = (await self._policy.current()).decide(form.domain)
        answers = self._answers(form, decision)
        now = self._clock()
        remembered = False
        if decision.action is not Action.DENY and self._denials is not None:
            denial = await self._denials.denied_until(form.email)
            if denial is not None and denial[0] > now:
                decision, remembered = Decision(Action.DENY, decision.profile, "denied-before"), True
        due = now + timedelta(seconds=self._timers.queued_grace)
        signup = Signup(
            id=self._new_id(),
            email=form.email,
            display_name=form.display_name,
            company=form.company,
            justification=form.justification,
            status=Status.QUEUED,
            created_at=now,
            updated_at=now,
            deadline=now + timedelta(seconds=self._timers.deadline),
            due_at=due,
            policy_profile=decision.profile.name if decision.profile else None,
            policy_action=decision.action.value,
            policy_reason=decision.reason,
            language=form.language,
            answers=answers,
            terms_version=form.terms_version,
        )
        await self._record_received(signup, remembered)
        if decision.action is not Action.APPROVE:
            return await self._record_unadmitted(signup, decision.action)
        try:
            # The record and its index entry are independent writes: make them together, and wait for
            # both even when one fails, so that nothing lands after the clean-up below.
            created, indexed = await asyncio.gather(
                self._store.create(signup), self._index.add(DueEntry(bucket_of(due), signup.id)), return_exceptions=True
            )
            for result in (created, indexed):
                if isinstance(result, BaseException):
                    raise result
            assert isinstance(created, Signup)
            admitted = await self._admission.admit(created, fresh=True)
        except (StorageError, ConcurrencyConflict):
            await self._discard(signup.id)
            raise
        log.info("intake.accepted signup_id=%s domain=%s status=%s", signup.id, form.domain, admitted.status.value)
        return admitted

    @staticmethod
    def _answers(form: SignupForm, decision: Decision) -> dict[str, str]:
        """The answers to the matched profile's questions (others are dropped); a missing required one is a 400."""
        questions = decision.profile.questions if decision.profile is not None else ()
        errors: dict[str, list[str]] = {}
        answers: dict[str, str] = {}
        for question in questions:
            text = form.answers.get(question.id, "")
            if not text and question.required:
                errors[f"answers.{question.id}"] = ["is required"]
            elif len(text) > question.max_length:
                errors[f"answers.{question.id}"] = [f"must be at most {question.max_length} characters"]
            elif text:
                answers[question.id] = text
        if errors:
            raise ValidationFailed(errors)
        return answers

    async def _record_received(self, signup: Signup, remembered: bool) -> None:
        """The audit trail's first two events: what was asked, and what the policy decided."""
        if self._audit is None:
            return
        received = {
            "email": signup.email,
            "domain": signup.domain,
            "displayName": signup.display_name,
            "company": signup.company,
            "justification": signup.justification,
            "answers": signup.answers,
            "language": signup.language,
            "termsVersion": signup.terms_version,
        }
        policy = {"action": signup.policy_action, "profile": signup.policy_profile, "reason": signup.policy_reason}
        if remembered:
            policy["note"] = "the address was denied by an approver within the denial memory"
        await self._audit.append(AuditEntry(signup.id, signup.created_at, "received", "requester", received))
        await self._audit.append(AuditEntry(signup.id, signup.created_at, "policy", "policy", policy))

    async def _record_unadmitted(self, signup: Signup, action: Action) -> Signup:
        """Write a denied or pending sign-up: no claim. A pending one expires at its deadline, and its
        approvers' mail, when there are approvers, goes through the queue like an invitation."""
        if action is Action.DENY:
            status, due, step = Status.DENIED, None, None
        else:
            status = Status.PENDING_APPROVAL
            step = await self._approver_step(signup.policy_profile) if self._approver_step else None
            expires = signup.created_at + timedelta(seconds=self._pending_expiry)
            mail_due = signup.created_at + timedelta(seconds=self._timers.queued_grace)
            due = min(expires, mail_due) if step is Step.DUE else expires
            signup = signup.evolve(deadline=expires)
            await self._index.add(DueEntry(bucket_of(due), signup.id))
        created = await self._store.create(
            signup.evolve(status=status, due_at=due, approver_mail=step, updated_at=signup.created_at)
        )
        if step is Step.DUE and self._queue is not None:
            try:
                await self._queue.enqueue(created.id)
            except StorageError:
                # Recorded and indexed: the sweeper sends the approvers' mail after the queued grace.
                log.warning("intake.approver_mail_not_queued signup_id=%s", created.id)
        log.info(
            "intake.%s signup_id=%s domain=%s profile=%s reason=%s",
            status.value,
            created.id,
            created.domain,
            created.policy_profile,
            created.policy_reason,
        )
        if status is Status.DENIED:
            raise SignupForbidden(created.id)
        return created

    async def _discard(self, signup_id: str) -> None:
        try:
            await self._store.delete(signup_id)
        except StorageError:
            # The id was never given out; the due index brings the orphan to the sweeper.
            log.error("intake.orphan_record signup_id=%s", signup_id)

    async def public_status(self, signup_id: str) -> dict[str, Any] | None:
        """The anonymous view of a sign-up (a linked one shows its owner's progress), or None."""
        if not is_signup_id(signup_id):
            return None
        signup = await self._store.get(signup_id)
        if signup is None:
            return None
        if signup.status is Status.LINKED and signup.linked_to:
            owner = await self._store.get(signup.linked_to)
            if owner is not None:
                view = owner.public_view()
                mine = signup.public_view()
                return {
                    **view,
                    "id": signup.id,
                    "createdAt": mine["createdAt"],
                    "updatedAt": max(view["updatedAt"], mine["updatedAt"]),
                }
            # The owner's intake was rolled back: the sweeper revives this one; until then it waits.
            return {**signup.public_view(), "status": Status.QUEUED.value}
        return signup.public_view()
