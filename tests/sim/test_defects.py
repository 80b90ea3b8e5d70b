"""Issue 15's defects 1-8, each as a hand-built scenario on the project's fakes (``tests/lifecycle_kit.py``).

The old code (``git show a824b9c:shared/lifecycle/worker.py`` and its siblings) cannot run against the new API,
so each docstring argues from it why the scenario failed there; each passes on the reworked lifecycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from shared.admin.replay import Replayer, Selection
from shared.errors import AmbiguousGraphError, DecisionConflict, PermanentGraphError, StorageError
from shared.graph.directory import Invitation, InvitationResult
from shared.lifecycle.models import Signup, Status, Step
from shared.lifecycle.store import DueEntry, bucket_of
from shared.lifecycle.transitions import Event
from shared.lifecycle.writes import write
from tests.fakes import FakeDirectory, FakeStore
from tests.lifecycle_kit import APPROVER, Kit
from tests.test_approval import POLICY

LOST = AmbiguousGraphError("answer lost", code="GatewayTimeout", status=504)
Hook = Callable[[], Awaitable[None]]


class PausingDirectory(FakeDirectory):
    """``invite`` runs ``pause`` after the fence, before Graph acts (a slow POST, or a 429's pause and retry)."""

    pause: Hook | None = None
    refence = False  # after the pause, run the fence again before acting (the client's retry after a 429)

    async def invite(self, invitation: Invitation, *, fence: Hook | None = None) -> InvitationResult:
        async def fenced() -> None:
            if fence is not None:
                await fence()
            if self.pause is not None:
                hook, self.pause = self.pause, None
                await hook()
                if self.refence and fence is not None:
                    await fence()

        return await super().invite(invitation, fence=fenced)


async def test_defect_1_a_lost_answer_near_the_deadline_is_settled_by_a_read_not_failed() -> None:
    """Old: the POST 10 s before the deadline acts and its answer is lost; ``_retry`` saw the next due time past
    the deadline and wrote ``failed`` (maybe_invited ignored). A failed owner does not hold the address, so the
    requester's new sign-up was invited and mailed again. New: ``doubt.give_up`` keeps it ``retrying`` and
    reads the directory, which shows the guest: ``invited``; the repeat sign-up links to it. One mail."""
    kit = Kit(directory=FakeDirectory([("acted", LOST)]))
    sid = await kit.submit()
    kit.pass_time(kit.timers.deadline - 10)
    await kit.deliver_due()
    assert kit.record(sid).status is Status.RETRYING and kit.record(sid).maybe_invited
    kit.pass_time(kit.timers.ambiguous_delay + 5)
    await kit.deliver_due()
    assert kit.record(sid).status is Status.INVITED
    again = await kit.submit()
    assert kit.record(again).status is Status.LINKED
    assert kit.directory.mails("sam@fabrikam.com") == 1


async def test_defect_1_variant_the_sweeper_does_not_fail_a_request_whose_post_is_in_flight() -> None:
    """Old: the lease ran out while the POST was in flight; the sweeper saw the deadline passed and wrote
    ``failed`` without reading (maybe_invited set), and the worker's success write then lost its ETag race: a
    guest invited and mailed, recorded failed. New: the sweeper's deadline rule (``doubt.give_up``) never writes
    failed in doubt; it re-enqueues for a read, and the worker's success write lands."""
    directory = PausingDirectory()
    kit = Kit(directory=directory)
    sid = await kit.submit()
    kit.pass_time(kit.timers.deadline - 5)

    async def sweep_past_the_lease() -> None:
        kit.pass_time(kit.timers.lease + 120)
        kit.index.bucket = bucket_of(kit.clock.now - timedelta(minutes=30))
        await kit.index.add(DueEntry(bucket_of(kit.clock.now - timedelta(minutes=5)), sid))
        await kit.sweeper.sweep()
        assert kit.record(sid).status is not Status.FAILED

    directory.pause = sweep_past_the_lease
    await kit.deliver_due()
    assert kit.record(sid).status is Status.INVITED
    assert kit.directory.mails("sam@fabrikam.com") == 1


async def test_defect_2_a_worker_that_outran_its_lease_does_not_post() -> None:
    """Old: the lease counted only pacing waits, and nothing re-checked it right before the POST; a delivery
    paused (a 429's pause, storage rounds) past its lease, a second delivery claimed the request and invited,
    and the first then POSTed too: two Microsoft mails. New: the client runs the fence after every wait and
    right before each POST; the fence's conditional write fails (the record changed), so nothing is sent."""
    directory = PausingDirectory()
    directory.refence = True
    kit = Kit(directory=directory)
    sid = await kit.submit()
    kit.queue.sent.clear()

    async def second_delivery_meanwhile() -> None:
        kit.pass_time(kit.timers.lease + 5)
        assert await kit.worker.process(sid) is not None

    directory.pause = second_delivery_meanwhile
    await kit.worker.process(sid)
    assert kit.record(sid).status is Status.INVITED
    assert len(kit.directory.invitations) == 1 and kit.directory.mails("sam@fabrikam.com") == 1


async def test_defect_3_an_orphaned_record_and_its_retry_invite_once() -> None:
    """Old: intake took the claim, then failed to enqueue, then failed to delete its claim and record; the
    sweeper invited the orphan later without the claim, and the requester's retry took the claim and was
    invited as well: two mails. New: intake takes no claim; admission (in the worker) does, and the fence
    checks it before the POST, so the orphan, found by the sweeper, links to the retry that owns the address."""
    kit = Kit()
    kit.queue.fail, kit.store.fail_delete = True, True
    with contextlib.suppress(StorageError):
        await kit.submit(admit=False)
    [orphan] = kit.store.records
    kit.queue.fail, kit.store.fail_delete = False, False
    retry = await kit.submit()
    await kit.deliver_due()
    assert kit.record(retry).status is Status.INVITED
    kit.pass_time(kit.timers.queued_grace + 120)
    await kit.sweeper.sweep()
    await kit.deliver_due()
    assert kit.record(orphan).status is Status.LINKED and kit.record(orphan).linked_to == retry
    assert kit.directory.mails("sam@fabrikam.com") == 1


async def test_defect_3_variant_an_approval_whose_claim_fails_queues_nothing() -> None:
    """Old: ``approve`` wrote ``queued`` before ``admit`` took the claim; when ``admit`` failed the request was
    queued without a claim and was invited alongside another owner. New: ``Admission.approve`` takes the claim
    first; if that fails nothing is written and the request stays pending (the approver retries)."""
    kit = Kit(policy=POLICY)
    sid = await kit.submit("sam@northwind.com")

    async def broken(*args: object) -> object:
        raise StorageError("claims unavailable")

    kit.addresses.get = broken  # type: ignore[method-assign]
    kit.addresses.claims.clear()  # the insert fails too: someone else's claim vanished meanwhile
    kit.addresses.insert = broken  # type: ignore[method-assign,assignment]
    with contextlib.suppress(StorageError):
        await kit.approvals.approve(sid, APPROVER, None)
    assert kit.record(sid).status is Status.PENDING_APPROVAL


async def test_defect_4_a_replay_whose_queue_fails_is_finished_by_the_sweeper() -> None:
    """Old: ``admit(fresh=False)`` wrote ``queued`` before the due-index entry; when the next write failed there
    was no message and no entry, and later sign-ups linked to the stuck request forever. New: ``revive`` writes
    the entry first: when that fails nothing changes (still failed, replay can run again), and a replay whose
    message is lost is queued again by the sweeper and finishes."""
    kit = Kit(directory=FakeDirectory([PermanentGraphError("no", code="BadRequest", status=400)]))
    sid = await kit.submit()
    await kit.deliver_due()
    assert kit.record(sid).status is Status.FAILED
    # The index write fails: nothing is written, the request stays failed (replay can run again).
    add = kit.index.add

    async def index_down(entry: DueEntry) -> None:
        raise StorageError("index unavailable")

    kit.index.add = index_down  # type: ignore[method-assign]
    with contextlib.suppress(StorageError):
        [r async for r in Replayer(kit.store, kit.admission).replay(Selection(ids=(sid,)))]
    kit.index.add = add  # type: ignore[method-assign]
    assert kit.record(sid).status is Status.FAILED
    # The message is lost: the entry written first brings it to the sweeper.
    kit.queue.fail = True
    [result] = [r async for r in Replayer(kit.store, kit.admission).replay(Selection(ids=(sid,)))]
    kit.queue.fail = False
    assert result.action == "requeued" and kit.queue.sent == []
    kit.pass_time(kit.timers.queued_grace + 120)
    await kit.sweeper.sweep()
    await kit.deliver_due()
    assert kit.record(sid).status is Status.INVITED


async def test_defect_5_a_second_request_under_review_links_to_the_first() -> None:
    """Old: pending requests took no claim; two pending requests for one address each mailed the approvers,
    and approving the second after the first was invited (past 24 h) invited and mailed again. New: the second
    links to the open review; the approvers get one mail; the address one invitation."""
    kit = Kit(policy=POLICY)
    first = await kit.submit("sam@northwind.com")
    second = await kit.submit("sam@northwind.com")
    await kit.deliver_due()
    assert kit.record(second).status is Status.LINKED and kit.record(second).linked_to == first
    assert len(kit.directory.sent_mails) == 1
    await kit.approvals.approve(first, APPROVER, None)
    await kit.deliver_due()
    kit.pass_time(kit.timers.repeat_window + 60)
    with contextlib.suppress(DecisionConflict):  # 409: no longer pending, the right answer
        await kit.approvals.approve(second, APPROVER, None)
    await kit.deliver_due()
    assert kit.directory.mails("sam@northwind.com") == 1


async def test_defect_6_replay_racing_a_new_sign_up_leaves_one_owner() -> None:
    """Old: ``owner_for`` returned the current holder without touching the claim's ETag. A new sign-up reads the
    claim (the failed holder's) and the holder's record (failed: it no longer blocks); meanwhile replay
    re-admits the holder, which finds the claim already its own and queues; the new sign-up's take-over, based
    on its older read, still succeeded: two owners. New: claiming touches the claim conditionally, so the
    take-over fails, re-reads, and the new sign-up links to the replayed holder."""
    from tests.lifecycle_kit import form

    kit = Kit(directory=FakeDirectory([PermanentGraphError("no", code="BadRequest", status=400)]))
    held = await kit.submit()
    await kit.deliver_due()
    assert kit.record(held).status is Status.FAILED
    created = await kit.intake.submit(form())
    kit.queue.sent.clear()
    plain_get = kit.store.get
    raced = []

    async def get(signup_id: str) -> Signup | None:
        found = await plain_get(signup_id)
        if signup_id == held and not raced and found is not None and found.status is Status.FAILED:
            raced.append(True)  # the new sign-up has read the holder as failed: replay runs now
            [r async for r in Replayer(kit.store, kit.admission).replay(Selection(ids=(held,)))]
        return found

    kit.store.get = get  # type: ignore[method-assign]
    await kit.admission.admit(kit.store.records[created.id], enqueue=True)
    kit.store.get = plain_get  # type: ignore[method-assign]
    assert raced
    owners = [sid for sid in (held, created.id) if kit.record(sid).status is not Status.LINKED]
    assert owners == [held] and kit.record(created.id).linked_to == held
    assert next(iter(kit.addresses.claims.values())).signup_id == held
    await kit.run_until_quiet()
    assert kit.record(held).status is Status.INVITED
    assert kit.directory.mails("sam@fabrikam.com") == 1


class LandThenConflictOnSending(FakeStore):
    """Reports 412 for the write that marks the organisation's mail ``sending``, after it landed."""

    async def replace(self, signup: Signup) -> Signup:
        if signup.org_mail is Step.SENDING and not getattr(self, "_done", False):
            self._done = True
            self.land_then_conflict = 1
        return await super().replace(signup)


async def test_defect_7_a_landed_sending_mark_reported_412_still_sends_the_mail() -> None:
    """Old: the ``sending`` mark was a plain replace with no write token; the SDK's retry of the landed write
    returned 412, the worker gave up on the mail, and later turned ``sending`` into ``unknown``: the guest, whose
    Microsoft mail the template replaced, got no mail at all while the status said invited. New: the write
    token recognises the landed write as ours, and the mail is sent once."""
    kit = Kit(policy=POLICY, store=LandThenConflictOnSending())
    sid = await kit.submit("sam@fabrikam.com")
    await kit.run_until_quiet()
    record = kit.record(sid)
    assert record.status is Status.INVITED and record.org_mail is Step.DONE
    assert [m.to for _, m in kit.directory.sent_mails] == [("sam@fabrikam.com",)]
    assert kit.directory.mails("sam@fabrikam.com") == 0  # the template replaced Microsoft's mail


async def test_defect_8_the_sweeper_caps_its_nudge_at_the_deadline() -> None:
    """Old: the sweeper re-queued an overdue request and looked again after a doubling grace not capped at the
    deadline (final up to an hour late). New: the next look is never after the deadline."""
    kit = Kit(timers=Kit().timers.__class__(deadline=1800, queued_grace=600, lease=60, ambiguous_delay=30))
    sid = await kit.submit()
    kit.queue.sent.clear()  # the message is lost
    kit.pass_time(kit.timers.deadline - 300)
    record = kit.record(sid)
    await write(kit.store, record, Event.STEP, clock=kit.clock, due_at=kit.clock.now - timedelta(minutes=1))
    kit.index.bucket = bucket_of(kit.clock.now - timedelta(minutes=10))
    await kit.index.add(DueEntry(bucket_of(kit.clock.now - timedelta(minutes=2)), sid, nudges=3))
    report = await kit.sweeper.sweep()
    assert sid in report.requeued
    latest = max(e.bucket for e in kit.index.entries() if e.signup_id == sid)
    assert latest <= bucket_of(kit.record(sid).deadline)


class UnreadableRecord(FakeStore):
    """One record whose read always fails (a record that does not parse, or a partition that keeps failing)."""

    bad: str = ""

    async def get(self, signup_id: str) -> Signup | None:
        if signup_id == self.bad:
            raise StorageError("does not parse")
        return await super().get(signup_id)


async def test_defect_8_one_bad_entry_does_not_hold_the_cursor() -> None:
    """Old: an index entry that always failed kept the cursor at its minute, and every later minute waited
    behind it. New: the entry is moved on (and set aside after ``MAX_NUDGES``); the cursor advances and the
    later minutes are handled."""
    store = UnreadableRecord()
    kit = Kit(store=store)
    bad = await kit.submit("bad@fabrikam.com")
    store.bad = bad
    good = await kit.submit()
    kit.queue.sent.clear()  # both messages lost
    kit.index.bucket = bucket_of(kit.clock.now - timedelta(minutes=1))
    kit.pass_time(kit.timers.queued_grace + 180)
    report = await kit.sweeper.sweep()
    assert report.complete and kit.index.bucket >= bucket_of(kit.clock.now - timedelta(minutes=2))
    assert good in report.requeued
    await kit.deliver_due()
    assert kit.record(good).status is Status.INVITED
