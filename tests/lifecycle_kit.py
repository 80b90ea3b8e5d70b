"""A lifecycle wired on fakes with one settable clock: intake, admission, worker and sweeper."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from shared.access import Caller
from shared.approval.denials import MemoryDenials
from shared.audit import MemoryAuditLog
from shared.lifecycle.intake import Timers
from shared.lifecycle.models import Signup
from shared.lifecycle.validation import SignupForm
from shared.lifecycle.worker import Outcome
from shared.policy import Action, Policy
from tests.fake_guest_register import FakeGuestRegister
from tests.fakes import Clock, FakeAddressBook, FakeDirectory, FakeDueIndex, FakeQueue, FakeStore
from tests.wiring import Parts, wire

# The kit's default policy invites everyone, so lifecycle tests need not name one.
APPROVE_ALL = Policy(default_action=Action.APPROVE)
TIMERS = Timers(
    retry_initial=10, retry_max=300, deadline=3600, repeat_window=600, queued_grace=120, lease=60, ambiguous_delay=30
)


APPROVER = Caller("principal", "approver@contoso.com")


def form(email: str = "sam@fabrikam.com") -> SignupForm:
    """A valid sign-up form for ``email``."""
    return SignupForm(email, "Sam Guest", "Fabrikam", None)


@dataclass
class Kit:
    """Every lifecycle part over the same fakes and clock."""

    directory: FakeDirectory = field(default_factory=FakeDirectory)
    timers: Timers = TIMERS
    clock: Clock = field(default_factory=Clock)
    store: FakeStore = field(default_factory=FakeStore)
    addresses: FakeAddressBook = field(default_factory=FakeAddressBook)
    index: FakeDueIndex = field(default_factory=FakeDueIndex)
    queue: FakeQueue = field(default_factory=FakeQueue)
    policy: Policy = APPROVE_ALL
    audit: MemoryAuditLog = field(default_factory=MemoryAuditLog)
    denials: MemoryDenials = field(default_factory=MemoryDenials)
    sender: str | None = "portal@contoso.com"
    pending_expiry: float = 7200.0
    denial_memory: float = 3600.0
    guests: FakeGuestRegister = field(default_factory=FakeGuestRegister)

    def __post_init__(self) -> None:
        self.timers = dataclasses.replace(self.timers, pending_expiry=self.pending_expiry)
        parts = Parts(
            self.store,
            self.addresses,
            self.index,
            self.queue,
            self.directory,
            self.audit,
            self.denials,
            self.timers,
            self.clock,
            self.policy,
            jitter=lambda: 0.0,
            sender=self.sender,
            denial_memory=self.denial_memory,
            guests=self.guests,
        )
        wired = wire(parts)
        self.follow_ups = wired.follow_ups
        self.admission = wired.admission
        self.intake = wired.intake
        self.approvals = wired.approvals
        self.worker = wired.worker
        self.sweeper = wired.sweeper

    async def submit(self, email: str = "sam@fabrikam.com", *, admit: bool = True) -> str:
        """Submit a sign-up; its id. ``admit``: also run the worker's first step (admission) on it, as a
        delivery would, leaving one message for a queued request (the old intake's shape)."""
        created = await self.intake.submit(form(email))
        if admit:
            self.queue.sent.remove((created.id, 0.0))
            await self.admission.admit(self.store.records[created.id], enqueue=True)
        return created.id

    async def history(self, signup_id: str) -> list[str]:
        """The audit events of one sign-up, in order."""
        return [entry.event for entry in await self.audit.history(signup_id)]

    def record(self, signup_id: str) -> Signup:
        """The stored record."""
        return self.store.records[signup_id]

    async def deliver_due(self, limit: int = 50) -> list[Outcome]:
        """Deliver every queued message whose delay has passed (by the clock), in order, like the host."""
        outcomes: list[Outcome] = []
        for _ in range(limit):
            pending = self.queue.sent
            due = [i for i, (_, delay) in enumerate(pending) if delay <= 0]
            if not due:
                break
            signup_id, _ = pending.pop(due[0])
            outcomes.append(await self.worker.process(signup_id))
        return outcomes

    def pass_time(self, seconds: float) -> None:
        """Move the clock on and count down every message's visibility delay."""
        self.clock.advance(seconds)
        self.queue.sent = [(sid, delay - seconds) for sid, delay in self.queue.sent]

    async def run_until_quiet(self, step: float = 5.0, horizon: float = 7200.0) -> None:
        """Deliver and let time pass until no message is left (or the horizon is reached)."""
        elapsed = 0.0
        while self.queue.sent and elapsed < horizon:
            await self.deliver_due()
            if self.queue.sent:
                self.pass_time(step)
                elapsed += step
