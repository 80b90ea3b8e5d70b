"""The lifecycle's object graph over any set of storage, queue and directory parts.

The lifecycle kit (fakes, one settable clock) and the simulator (a seeded world with faults) wire the same
real objects: follow-ups, admission, intake, approvals, worker and sweeper. ``wire`` builds them once, so
the two cannot drift apart in how the parts are connected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.approval import Approvals
from shared.graph.directory import InvitationOptions
from shared.guests import GuestRecorder
from shared.lifecycle.admission import Admission
from shared.lifecycle.intake import Intake
from shared.lifecycle.sweeper import Sweeper
from shared.lifecycle.timers import Timers
from shared.lifecycle.worker import InvitationWorker
from shared.onboarding import FollowUps
from shared.policy import FixedPolicy, Policy

OPTIONS = InvitationOptions(redirect_url="https://myapps.microsoft.com")


@dataclass(frozen=True)
class Parts:
    """What the lifecycle runs on: storage, queue, directory, clock and the policy."""

    store: Any
    addresses: Any
    index: Any
    queue: Any
    directory: Any
    audit: Any
    denials: Any
    timers: Timers
    clock: Callable[[], datetime]
    policy: Policy
    jitter: Callable[[], float]
    sender: str | None = "portal@contoso.com"
    denial_memory: float = 3600.0
    new_id: Callable[[datetime], str] | None = None
    guests: Any = None  # a guest register, or None for none
    sweeper_page_size: int = 200


@dataclass(frozen=True)
class Lifecycle:
    """The wired lifecycle."""

    follow_ups: FollowUps
    admission: Admission
    intake: Intake
    approvals: Approvals
    worker: InvitationWorker
    sweeper: Sweeper


def wire(p: Parts) -> Lifecycle:
    """Build the lifecycle's objects over ``p``."""
    source = FixedPolicy(p.policy)
    follow_ups = FollowUps(
        p.store,
        p.queue,
        p.directory,
        p.audit,
        p.timers,
        policy=source,
        sender=p.sender,
        manage_url="https://portal.example/api/manage",
        organisation="Contoso",
        contact="partners@contoso.com",
        addresses=p.addresses,  # one "you already have an account" mail per address per window
        clock=p.clock,
        jitter=p.jitter,
    )
    admission = Admission(
        p.store,
        p.addresses,
        p.index,
        p.queue,
        p.timers,
        clock=p.clock,
        denials=p.denials,
        audit=p.audit,
        approver_step=follow_ups.approver_step,
    )
    ids = {} if p.new_id is None else {"new_id": p.new_id}
    intake = Intake(p.store, p.queue, p.timers, clock=p.clock, policy=source, **ids)
    approvals = Approvals(
        p.store,
        admission,
        p.index,
        p.audit,
        p.denials,
        p.timers,
        denial_memory=p.denial_memory,
        clock=p.clock,
    )
    worker = InvitationWorker(
        p.store,
        p.queue,
        p.directory,
        OPTIONS,
        p.timers,
        admission=admission,
        clock=p.clock,
        jitter=p.jitter,
        policy=source,
        follow_ups=follow_ups,
        audit=p.audit,
        guests=None if p.guests is None else GuestRecorder(p.guests, source),
    )
    sweeper = Sweeper(
        p.store,
        p.index,
        p.queue,
        admission,
        p.timers,
        clock=p.clock,
        audit=p.audit,
        page_size=p.sweeper_page_size,
    )
    return Lifecycle(follow_ups, admission, intake, approvals, worker, sweeper)
