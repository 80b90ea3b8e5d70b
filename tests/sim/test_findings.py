"""Bugs the simulator found in the reworked lifecycle, each as the smallest scenario that shows it.

Every test here failed on commit 3253a0d and passes with the fix named in its docstring.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from shared.errors import StorageError, TransientGraphError
from shared.graph.directory import MailMessage
from shared.lifecycle.models import Status, Step
from shared.lifecycle.worker import Outcome
from tests.fakes import FakeDirectory
from tests.lifecycle_kit import APPROVER, Kit
from tests.test_approval import POLICY


class DecidedWhileMailing(FakeDirectory):
    """Runs ``during`` while the approvers' mail is on its way (the mail then goes)."""

    during = None

    async def send_mail(self, sender: str, message: MailMessage) -> None:
        if self.during is not None:
            hook, self.during = self.during, None
            await hook()
        await super().send_mail(sender, message)


@pytest.mark.parametrize("answer", [None, TransientGraphError("throttled", code="TooManyRequests", status=429)])
async def test_a_decision_during_the_approvers_mail_is_not_an_illegal_transition(answer: Exception | None) -> None:
    """Simulator seeds 57 and 2858: the worker marks the approvers' mail ``sending`` and calls Graph; meanwhile an
    approver denies the request. The mail goes (or Graph answers 429); ``FollowUps._settle`` writes ``done`` (or
    ``due`` and a retry), loses the race, re-reads the record (now ``denied``) and wrote a STEP over it:
    ``IllegalTransition`` (step is not allowed from denied), raised out of the delivery. The same for an expiry,
    or an approval that linked the request. Fix: a step's bookkeeping stops once the request has moved to a
    status that takes no steps (the decision stands)."""
    directory = DecidedWhileMailing()
    directory.mail_outcomes = [answer]
    kit = Kit(policy=POLICY, directory=directory)
    sid = await kit.submit("sam@northwind.com")
    assert kit.record(sid).approver_mail is Step.DUE

    async def deny() -> None:
        await kit.approvals.deny(sid, APPROVER, "not a partner")

    directory.during = deny
    assert await kit.deliver_due() == [Outcome.FOLLOWED_UP]
    assert kit.record(sid).status is Status.DENIED
    assert len(directory.sent_mails) == (1 if answer is None else 0)


async def test_replaying_an_approved_request_does_not_reopen_its_review() -> None:
    """Simulator seed 972: a request under review is approved, then fails (Graph refused it, or its deadline
    passed). Replay revives it and admission asked ``policy_action == "review"`` again: the request went back to
    ``pending_approval`` and its approvers got a second mail for a request they had already approved. Fix: a
    request an approver decided is not put under review again by admission."""
    from shared.admin.replay import Replayer, Selection
    from shared.errors import PermanentGraphError

    kit = Kit(policy=POLICY, directory=FakeDirectory([PermanentGraphError("no", code="BadRequest", status=400)]))
    sid = await kit.submit("sam@northwind.com")
    await kit.deliver_due()  # the approvers' mail
    await kit.approvals.approve(sid, APPROVER, None)
    await kit.deliver_due()
    assert kit.record(sid).status is Status.FAILED
    [result] = [r async for r in Replayer(kit.store, kit.admission).replay(Selection(ids=(sid,)))]
    assert result.action == "requeued"
    assert kit.record(sid).status is Status.QUEUED
    await kit.deliver_due()
    assert kit.record(sid).status is Status.INVITED
    assert len(kit.directory.sent_mails) == 1  # the approvers were told once


async def test_entries_written_before_the_first_successful_sweep_are_not_skipped() -> None:
    """Found while building the simulator (its seed 163, before the simulator gave every world a cursor from
    the start): with no cursor, a sweep starts at the last passed minute, and the cursor is first written when a
    sweep completes a minute. If the first sweeps after a deployment fail (storage unavailable) while sign-ups
    arrive and their messages are lost, their entries (and received records) sit in minutes before the first
    cursor and are never read: the requests stay queued forever. Fixed: the first sweep writes its cursor before
    it reads anything, so later runs resume from it."""
    kit = Kit()
    sid = await kit.submit()
    kit.queue.sent.clear()  # its message is lost
    kit.index.fail_page = True
    for _ in range(15):  # a quarter of an hour of failing sweeps
        kit.pass_time(60)
        with contextlib.suppress(StorageError):
            await kit.sweeper.sweep()
    kit.index.fail_page = False
    for _ in range(5):
        kit.pass_time(60)
        await kit.sweeper.sweep()
        await kit.deliver_due()
    assert kit.record(sid).status is Status.INVITED


async def test_a_request_in_doubt_is_looked_at_by_its_doubt_cap() -> None:
    """Simulator seed 5920: past its deadline, in doubt, a request reads the directory until the doubt cap. Its
    messages are lost; the sweeper re-enqueues it and looks again after a doubling grace, capped at the deadline
    only while the deadline lies ahead: past it, the next look could come up to an hour after the doubt cap, so
    the request ended ``unknown`` (or was settled) that late. Fix: in doubt past the deadline, the next look is
    capped at the doubt cap, and past the cap it comes after one grace, not a doubling one."""
    import dataclasses

    from shared.lifecycle.store import DueEntry, bucket_of
    from shared.lifecycle.transitions import Event
    from shared.lifecycle.writes import write

    kit = Kit()
    kit.timers = dataclasses.replace(kit.timers, doubt_cap=1200)
    kit.__post_init__()
    sid = await kit.submit()
    kit.queue.sent.clear()
    kit.pass_time(kit.timers.deadline + 60)
    record = kit.record(sid)
    record = await write(kit.store, record, Event.CLAIM, clock=kit.clock, maybe_invited=True, attempts=1)
    await write(kit.store, record, Event.RETRY, clock=kit.clock, due_at=kit.clock.now, lease_until=None)
    kit.index.bucket = bucket_of(kit.clock.now - timedelta(minutes=5))
    await kit.index.add(DueEntry(bucket_of(kit.clock.now - timedelta(minutes=2)), sid, nudges=4))
    report = await kit.sweeper.sweep()
    assert sid in report.requeued
    cap = kit.record(sid).deadline + timedelta(seconds=kit.timers.doubt_cap)
    assert max(e.bucket for e in kit.index.entries() if e.signup_id == sid) <= bucket_of(cap)


async def test_a_follower_of_a_replayed_owner_is_not_stranded() -> None:
    """Simulator seeds 2240, 5123, 7375, 9715 (beyond the 2,000 that ``make test`` runs): B links to A while A is
    queued; A fails ``ExistingMember`` (a directory fact), so the sweeper drops B's entry (B shows completed).
    An admin replays A; A now ends ``failed`` with a code that is not a directory fact. B stays linked to an
    owner that ended without inviting, with no entry left: never revived, and shown ``queued`` for good. Fixed:
    only an owner that invited (or may have) settles its followers; any failed owner gives each its own turn."""
    from shared.admin.replay import Replayer, Selection
    from shared.errors import PermanentGraphError
    from shared.lifecycle.store import bucket_of

    kit = Kit()
    kit.directory.add_user("sam@fabrikam.com")  # a member: A fails ExistingMember
    a = await kit.submit()
    b = await kit.submit()
    assert kit.record(b).status is Status.LINKED
    await kit.deliver_due()
    assert kit.record(a).error_code == "ExistingMember"
    kit.index.bucket = bucket_of(kit.clock.now - timedelta(minutes=1))
    kit.pass_time(kit.timers.queued_grace + 120)
    await kit.sweeper.sweep()  # B's entry: owner failed with a directory fact, dropped
    del kit.directory.users["sam@fabrikam.com"]
    kit.directory.outcomes = [PermanentGraphError("no", code="BadRequest", status=400)]
    [r async for r in Replayer(kit.store, kit.admission).replay(Selection(ids=(a,)))]
    await kit.deliver_due()
    for _ in range(90):
        kit.pass_time(60)
        await kit.sweeper.sweep()
        await kit.deliver_due()
    # Neither is left following an owner that ended without inviting (B got its own turn when A failed).
    for sid in (a, b):
        record = kit.record(sid)
        owner = kit.record(record.linked_to) if record.status is Status.LINKED and record.linked_to else None
        assert record.status.terminal, record.status
        assert owner is None or owner.status in {Status.INVITED, Status.UNKNOWN}, (sid, owner and owner.status)
