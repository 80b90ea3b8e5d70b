"""Admission: the one way a request becomes ``queued`` (or waits for review), with one order of writes.

Intake, the sweeper's revival of a linked request, replay, approval and
conversion requests all come through here. A request is admitted from
``received`` (or, by an approval, from ``pending_approval``) in this order::

    1. the due-index entry        a crash after this leaves work the sweeper finds
    2. the address claim          conditional insert, or a conditional touch/take-over
    3. the record's status        queued | pending_approval | linked | denied (remembered)
    4. the message                (the worker, already holding the delivery, goes on in place)

The claim gives an address one owner at a time. An owner *blocks* while it is
received, waiting for review, pending work, in doubt (``unknown``), or invited
within the repeat window (counted from its invitation); a blocked request is
``linked`` to the owner, so one address gets one invitation, one review and
one approvers' mail. Claiming touches the claim even when it is already ours
(an ETag-conditional rewrite), so a concurrent take-over based on an older
read fails and re-reads: two owners at once cannot happen.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ..audit import AuditEntry, AuditLog
from ..errors import StorageError
from .models import REMEMBERED_DENIAL, Signup, Status, Step, utcnow
from .queue import SignupQueue
from .store import AddressBook, DueEntry, DueIndex, SignupStore, address_key, bucket_of
from .timers import Timers
from .transitions import Event
from .writes import write

if TYPE_CHECKING:
    from ..approval.denials import DenialMemory

log = logging.getLogger(__name__)

MAX_CLAIM_ROUNDS: Final = 8
BLOCKING: Final = frozenset(
    {Status.RECEIVED, Status.PENDING_APPROVAL, Status.QUEUED, Status.INVITING, Status.RETRYING, Status.UNKNOWN}
)


class Admission:
    """Gives an address's invitation one owner at a time, and queues the owner."""

    def __init__(
        self,
        store: SignupStore,
        addresses: AddressBook,
        index: DueIndex,
        queue: SignupQueue,
        timers: Timers,
        *,
        clock: Callable[[], datetime] = utcnow,
        denials: DenialMemory | None = None,
        audit: AuditLog | None = None,
        approver_step: Callable[[str | None], Awaitable[Step | None]] | None = None,
        domain_allows: Callable[[str, datetime, str], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._addresses = addresses
        self._index = index
        self._queue = queue
        self._timers = timers
        self._clock = clock
        self._denials = denials
        self._audit = audit
        self._approver_step = approver_step
        self._domain_allows = domain_allows

    def blocks(self, owner: Signup, now: datetime) -> bool:
        """True when ``owner`` still stands for its address (see the module docstring)."""
        if owner.status in BLOCKING:
            return True
        window = timedelta(seconds=self._timers.repeat_window)
        return owner.status is Status.INVITED and owner.invited_at is not None and now - owner.invited_at < window

    @staticmethod
    def claim_key(signup: Signup) -> str:
        """The claim's key: the address, or for a conversion named only by its user, that user."""
        if signup.conversion is not None and not signup.email:
            return address_key("conversion:" + str(signup.conversion.get("user", "")))
        return address_key(signup.email)

    async def owner_for(self, signup: Signup) -> str | None:
        """Claim the address for ``signup``: None when it owns it now, else the id of the owner it follows."""
        key = self.claim_key(signup)
        for _ in range(MAX_CLAIM_ROUNDS):
            if await self._addresses.insert(key, signup.id):
                return None
            claim = await self._addresses.get(key)
            if claim is None:
                continue
            if claim.signup_id != signup.id:
                owner = await self._store.get(claim.signup_id)
                if owner is not None and self.blocks(owner, self._clock()):
                    return owner.id
            # Ours already (touch it), or its owner no longer blocks (take it over): both conditional.
            if await self._addresses.take_over(claim, signup.id):
                return None
        raise StorageError(f"the address claim for sign-up {signup.id} kept changing")

    async def holds_claim(self, signup: Signup) -> bool:
        """True when the address's claim names ``signup`` (the worker's check before it POSTs)."""
        claim = await self._addresses.get(self.claim_key(signup))
        return claim is not None and claim.signup_id == signup.id

    async def admit(self, signup: Signup, *, enqueue: bool) -> Signup:
        """Admit a ``received`` request: queued, waiting for review, linked, or a remembered denial."""
        now = self._clock()
        await self._received(signup)
        # A request an approver already approved (replayed, or revived after linking) is not reviewed again.
        review = signup.policy_action == "review" and signup.decided_at is None
        if signup.conversion is None and await self._remembered_denial(signup, now):
            expires = signup.created_at + timedelta(seconds=self._timers.pending_expiry)
            # A due entry first, though the request ends here: the sweeper's visit re-indexes it, should the
            # process die between the write and its day-index update (shared.stats).
            grace = now + timedelta(seconds=self._timers.queued_grace)
            await self._index.add(DueEntry(bucket_of(grace), signup.id))
            denied = await write(
                self._store,
                signup,
                Event.REMEMBERED_DENIAL,
                clock=self._clock,
                policy_action="deny",
                policy_reason=REMEMBERED_DENIAL,
                deadline=expires,
                due_at=None,
            )
            await self._record(denied, "policy", "policy", {"action": "deny", "reason": REMEMBERED_DENIAL})
            log.info("admission.remembered_denial signup_id=%s domain=%s", signup.id, signup.domain)
            return denied
        budgeted = not review and signup.conversion is None and self._domain_allows is not None
        if (
            budgeted
            and self._domain_allows is not None
            and not await self._domain_allows(signup.domain, now, signup.id)
        ):
            review = True  # over the domain's budget: a person looks at it instead of a refusal at the door
            signup = await write(
                self._store, signup, Event.STEP, clock=self._clock, policy_action="review", policy_reason="domain-rate"
            )
        grace = now + timedelta(seconds=self._timers.queued_grace)
        step = None
        if review:
            due = signup.created_at + timedelta(seconds=self._timers.pending_expiry)
            # A request revived after its own expiry is only expired by the sweeper: nobody is mailed for it.
            if self._approver_step is not None and due > now:
                step = await self._approver_step(signup.policy_profile)
        else:
            due = grace
        # A review is looked at when its approvers' mail is overdue, or at its expiry.
        await self._index.add(DueEntry(bucket_of(min(due, grace) if step is Step.DUE else due), signup.id))
        owner = await self.owner_for(signup)
        if owner is not None:
            return await self._link(signup, owner)
        if review:
            admitted = await write(
                self._store,
                signup,
                Event.ADMIT,
                Status.PENDING_APPROVAL,
                clock=self._clock,
                deadline=due,
                due_at=min(due, grace) if step is Step.DUE else due,
                approver_mail=step,
                linked_to=None,
            )
        else:
            admitted = await write(
                self._store, signup, Event.ADMIT, Status.QUEUED, clock=self._clock, due_at=due, linked_to=None
            )
        log.info("admission.admitted signup_id=%s domain=%s status=%s", signup.id, signup.domain, admitted.status.value)
        if enqueue and (admitted.status is Status.QUEUED or admitted.approver_mail is Step.DUE):
            await self._enqueue(admitted)
        return admitted

    async def approve(self, signup: Signup, **decision: Any) -> Signup:
        """An approver's yes: re-assert the claim and queue, or link to the address's current owner."""
        now = self._clock()
        due = now + timedelta(seconds=self._timers.queued_grace)
        await self._index.add(DueEntry(bucket_of(due), signup.id))
        owner = await self.owner_for(signup)
        if owner is not None:
            return await self._link(signup, owner, **decision)
        approved = await write(
            self._store,
            signup,
            Event.APPROVE,
            clock=self._clock,
            due_at=due,
            deadline=now + timedelta(seconds=self._timers.deadline),
            **decision,
        )
        await self._enqueue(approved)
        return approved

    async def revive(self, signup: Signup, event: Event, **changes: Any) -> Signup:
        """Give a linked request (owner ended without inviting) or a failed one (replay) a new admission."""
        now = self._clock()
        await self._index.add(DueEntry(bucket_of(now + timedelta(seconds=self._timers.queued_grace)), signup.id))
        received = await write(
            self._store,
            signup,
            event,
            clock=self._clock,
            deadline=now + timedelta(seconds=self._timers.deadline),
            due_at=now + timedelta(seconds=self._timers.queued_grace),
            linked_to=None,
            lease_until=None,
            error_code=None,
            error_message=None,
            error_detail=None,
            faults=0,
            **changes,
        )
        return await self.admit(received, enqueue=True)

    async def requeue(self, signup: Signup) -> None:
        """Queue a ``queued`` request again (an approval retried after its first call died before the queue)."""
        await self._enqueue(signup)

    async def _link(self, signup: Signup, owner: str, **decision: Any) -> Signup:
        linked = await write(self._store, signup, Event.LINK, clock=self._clock, linked_to=owner, **decision)
        await self._record(linked, "linked", "admission", {})
        log.info("admission.linked signup_id=%s owner_id=%s domain=%s", signup.id, owner, signup.domain)
        return linked

    async def _received(self, signup: Signup) -> None:
        """The audit trail's first two events, at the moment intake recorded the request (idempotent)."""
        if self._audit is None or signup.conversion is not None:
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
        await self._audit.append(AuditEntry(signup.id, signup.created_at, "received", "requester", received))
        await self._audit.append(AuditEntry(signup.id, signup.created_at, "policy", "policy", policy))

    async def _remembered_denial(self, signup: Signup, now: datetime) -> bool:
        if self._denials is None:
            return False
        denial = await self._denials.denied_until(signup.email)
        return denial is not None and denial[0] > now

    async def _enqueue(self, signup: Signup) -> None:
        try:
            await self._queue.enqueue(signup.id)
        except StorageError:
            # Recorded with its due entry: the sweeper queues it after the grace.
            log.warning("admission.not_queued signup_id=%s", signup.id)

    async def _record(self, signup: Signup, event: str, actor: str, detail: dict[str, Any]) -> None:
        if self._audit is not None:
            await self._audit.append(AuditEntry(signup.id, signup.updated_at, event, actor, detail))
