"""Intake: the HTTP trigger's durable work, one record and one message.

``Intake.submit`` asks the policy (in memory, no storage call), writes the
record and enqueues its id; everything that costs more round trips happens
behind the queue, in the lifecycle's admission step (``admission``): the
address claim, the due-index entry, the denial memory, the audit rows and the
approvers' mail. The public answer and the promises stay: one invitation per
address, nothing lost, a final status the requester can see.

* ``deny`` (a blocked domain, or an unknown one under ``defaultAction: deny``):
  recorded ``denied`` and ``SignupForbidden`` raised (403, saying nothing of the
  policy). This is configuration, not a fact about the directory or a person.
* ``review`` or ``approve``: recorded ``received`` with the decision, and queued;
  the answer is 202 with the request's public face (``pending_approval`` or
  ``queued``). A remembered denial is found at admission, so it answers like
  any request under review.

If the enqueue fails the record is deleted again and the caller answers 503. If
that clean-up fails too, a ``received`` record is left that nobody was told of;
it holds no claim and the sweeper finishes it from its own time bucket.
"""

from __future__ import annotations

import logging
from asyncio import gather
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .. import telemetry
from ..errors import SignupForbidden, StorageError, ValidationFailed
from ..policy import Action, Decision, FixedPolicy, PolicySource
from ..policy.document import NO_POLICY
from .admission import Admission
from .models import Signup, Status, id_minute, is_signup_id, new_signup_id, utcnow
from .queue import SignupQueue
from .store import DueEntry, DueIndex, SignupStore, bucket_of
from .timers import Timers
from .validation import SignupForm

__all__ = ["Admission", "Intake", "Timers"]

log = logging.getLogger(__name__)


class Intake:
    """Accepts sign-ups and answers status queries."""

    def __init__(
        self,
        store: SignupStore,
        queue: SignupQueue,
        timers: Timers,
        *,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[datetime], str] = new_signup_id,
        policy: PolicySource | None = None,
        index: DueIndex | None = None,
        trace_parent: Callable[[], str | None] = telemetry.traceparent,
    ) -> None:
        self._index = index
        self._trace_parent = trace_parent  # the simulator's replays need one that is not random
        self._store = store
        self._queue = queue
        self._policy = policy or FixedPolicy(NO_POLICY)
        self._timers = timers
        self._clock = clock
        self._new_id = new_id

    async def submit(self, form: SignupForm, *, signup_id: str | None = None) -> Signup:
        """Decide by the policy, record ``form`` and queue it; its public face goes back to the requester.

        Raises ``SignupForbidden`` (refusal recorded) when the policy denies it, ``ConcurrencyConflict``
        when ``signup_id`` (from a single-use form token) was used already, and ``StorageError``
        (nothing kept) when storage fails.
        """
        with telemetry.span("signup.intake", domain=form.domain) as current:
            signup = await self._submit(form, signup_id)
            current.set_attribute("signup.id", signup.id)
            return signup

    async def _submit(self, form: SignupForm, signup_id: str | None) -> Signup:
        decision = (await self._policy.current()).decide(form.domain)
        answers = self._answers(form, decision)
        now = self._clock()
        denied = decision.action is Action.DENY
        telemetry.count("signup.decisions", action=decision.action.value)
        signup = Signup(
            id=signup_id or self._new_id(now),
            email=form.email,
            display_name=form.display_name,
            company=form.company,
            justification=form.justification,
            status=Status.DENIED if denied else Status.RECEIVED,
            created_at=now,
            updated_at=now,
            deadline=now + timedelta(seconds=self._timers.deadline),
            due_at=None if denied else now + timedelta(seconds=self._timers.queued_grace),
            policy_profile=decision.profile.name if decision.profile else None,
            policy_action=decision.action.value,
            policy_reason=decision.reason,
            language=form.language,
            answers=answers,
            terms_version=form.terms_version,
            trace_parent=self._trace_parent(),
        )
        if denied:
            created = await self._store.create(signup)
            log.info(
                "intake.denied signup_id=%s domain=%s reason=%s", created.id, created.domain, created.policy_reason
            )
            raise SignupForbidden(created.id)
        # The insert and the enqueue go together: one round trip of latency, not two. A message that arrives
        # before its record finds it missing and comes back later (the worker waits for a recent id); both
        # results are awaited before any clean-up, so nothing lands after it.
        results = await gather(
            self._store.create(signup),
            self._queue.enqueue(signup.id),
            self._mark_old_minute(signup, now),
            return_exceptions=True,
        )
        created_or_error, enqueued, marked = results
        if isinstance(created_or_error, BaseException):
            raise created_or_error  # the message, if it went, finds no record and dies out
        created = created_or_error
        for error in (enqueued, marked):
            if isinstance(error, BaseException):
                await self._discard(created.id)
                raise error
        log.info("intake.accepted signup_id=%s domain=%s action=%s", created.id, form.domain, decision.action.value)
        return created

    async def _mark_old_minute(self, signup: Signup, now: datetime) -> None:
        """An id naming a minute the sweeper may have read already (a form token issued long before the post
        came): a due entry of its own, so a lost message is still found. The usual post pays nothing."""
        minute = id_minute(signup.id)
        grace = timedelta(seconds=self._timers.queued_grace)
        if self._index is not None and minute is not None and minute < now - grace / 2:
            await self._index.add(DueEntry(bucket_of(now + grace), signup.id))

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

    async def _discard(self, signup_id: str) -> None:
        try:
            await self._store.delete(signup_id)
        except StorageError:
            # The id was never given out; it holds no claim, and the sweeper finishes it.
            log.error("intake.orphan_record signup_id=%s", signup_id)

    async def public_status(self, signup_id: str) -> dict[str, Any] | None:
        """The anonymous view of a sign-up (``Signup.public_face``), or None."""
        if not is_signup_id(signup_id):
            return None
        signup = await self._store.get(signup_id)
        if signup is None:
            return None
        owner = None
        if signup.status is Status.LINKED and signup.linked_to:
            owner = await self._store.get(signup.linked_to)
        return signup.public_view(self._clock(), owner)
