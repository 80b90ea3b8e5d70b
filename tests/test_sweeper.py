"""The sweeper's every case, over in-memory stores and a settable clock."""

from __future__ import annotations

import pytest

from shared.errors import StorageError, TransientGraphError
from shared.lifecycle.models import Status
from shared.lifecycle.store import DueEntry, bucket_of
from shared.lifecycle.sweeper import Sweeper
from tests.fakes import FakeDirectory, FakeQueue
from tests.lifecycle_kit import Kit


async def _submit_and_lose_message(kit: Kit, email: str = "sam@fabrikam.com") -> str:
    sid = await kit.submit(email)
    kit.queue.sent = [(s, d) for s, d in kit.queue.sent if s != sid]
    return sid


async def test_first_sweep_starts_at_the_last_passed_minute() -> None:
    """With no cursor the sweeper reads only the minute just passed, then moves on minute by minute."""
    kit = Kit()
    report = await kit.sweeper.sweep()
    assert report.minutes == 1 and report.complete
    kit.pass_time(180)
    report = await kit.sweeper.sweep()
    assert report.minutes == 3


async def test_lost_message_of_a_queued_signup_is_requeued() -> None:
    """Queued, message lost: once the grace has passed the sweeper re-enqueues it and it ends invited."""
    kit = Kit()
    await kit.sweeper.sweep()
    sid = await _submit_and_lose_message(kit)
    kit.pass_time(60)
    assert (await kit.sweeper.sweep()).requeued == []  # still within its grace
    kit.pass_time(kit.timers.queued_grace + 60)
    report = await kit.sweeper.sweep()
    assert report.requeued == [sid]
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED


async def test_nudges_back_off_and_the_entry_is_kept() -> None:
    """A re-enqueued sign-up keeps an index entry further out each time (the message may be slow, not lost)."""
    kit = Kit()
    await kit.sweeper.sweep()
    sid = await _submit_and_lose_message(kit)
    kit.pass_time(kit.timers.queued_grace + 90)
    await kit.sweeper.sweep()
    [entry] = kit.index.entries()
    assert entry.signup_id == sid and entry.nudges == 1
    kit.queue.sent.clear()
    kit.pass_time(kit.timers.queued_grace + 90)
    assert (await kit.sweeper.sweep()).requeued == []  # second nudge waits twice the grace
    kit.pass_time(kit.timers.queued_grace * 2)
    assert (await kit.sweeper.sweep()).requeued == [sid]
    assert kit.index.entries()[0].nudges == 2


async def test_finished_signups_drop_their_entry() -> None:
    """Invited or failed sign-ups, and missing ones, have their entries deleted and nothing queued."""
    kit = Kit()
    await kit.sweeper.sweep()
    sid = await kit.submit()
    await kit.run_until_quiet()
    await kit.index.add(DueEntry(bucket_of(kit.clock.now), "B" * 22))  # a record that no longer exists
    kit.pass_time(kit.timers.queued_grace + 90)
    report = await kit.sweeper.sweep()
    assert report.dropped == 2 and report.requeued == [] and kit.index.entries() == []
    assert kit.record(sid).status is Status.INVITED


async def test_entry_of_a_signup_not_yet_due_moves_to_its_due_minute() -> None:
    """A retry scheduled beyond the entry's minute: the entry moves forward, nothing is queued."""
    kit = Kit(directory=FakeDirectory([TransientGraphError("down", code="serviceNotAvailable", status=503)] * 3))
    await kit.sweeper.sweep()
    sid = await kit.submit()
    await kit.deliver_due()
    kit.store.records[sid] = kit.record(sid).evolve(due_at=kit.clock.now.replace(hour=10), etag=kit.record(sid).etag)
    kit.queue.sent.clear()
    kit.pass_time(kit.timers.queued_grace + 90)
    report = await kit.sweeper.sweep()
    assert report.moved == 1 and report.requeued == []
    assert [e.bucket for e in kit.index.entries()] == [bucket_of(kit.clock.now.replace(hour=10, minute=0))]


async def test_expired_lease_of_a_dead_worker_is_requeued() -> None:
    """Inviting with a lease that expired (the worker died): re-enqueued; the retry recovers without a mail."""
    kit = Kit()
    await kit.sweeper.sweep()
    sid = await _submit_and_lose_message(kit)
    record = kit.record(sid)
    lease = kit.clock.now.replace(minute=1)
    kit.store.records[sid] = record.evolve(
        status=Status.INVITING, lease_until=lease, due_at=lease, maybe_invited=True, etag=record.etag
    )
    kit.pass_time(kit.timers.queued_grace + 90)
    assert (await kit.sweeper.sweep()).requeued == [sid]
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED


async def test_overdue_retry_past_the_deadline_is_failed() -> None:
    """A retry whose message was lost, found after the deadline: failed with its last transient code."""
    kit = Kit()
    await kit.sweeper.sweep()
    sid = await _submit_and_lose_message(kit)
    record = kit.record(sid)
    kit.store.records[sid] = record.evolve(
        status=Status.RETRYING, due_at=record.created_at, error_code="TooManyRequests", etag=record.etag
    )
    kit.pass_time(kit.timers.deadline + 120)
    report = await kit.sweeper.sweep()
    assert report.failed == [sid]
    assert (kit.record(sid).status, kit.record(sid).error_code) == (Status.FAILED, "TooManyRequests")


async def test_linked_signup_whose_owner_vanished_is_revived() -> None:
    """A sign-up linked to an owner whose intake rolled back takes the address over and is invited."""
    kit = Kit()
    await kit.sweeper.sweep()
    owner = await kit.submit()
    linked = await kit.submit()
    assert kit.record(linked).status is Status.LINKED
    del kit.store.records[owner]
    kit.queue.sent.clear()
    kit.pass_time(kit.timers.queued_grace + 90)
    report = await kit.sweeper.sweep()
    assert report.revived == [linked]
    await kit.run_until_quiet()
    assert kit.record(linked).status is Status.INVITED


async def test_storage_failure_keeps_the_cursor_for_the_next_run() -> None:
    """If the index cannot be read the cursor does not move, so nothing is skipped."""
    kit = Kit()
    await kit.sweeper.sweep()
    cursor = kit.index.bucket
    kit.pass_time(120)
    kit.index.fail_page = True
    with pytest.raises(StorageError):
        await kit.sweeper.sweep()
    assert kit.index.bucket == cursor
    kit.index.fail_page = False
    assert (await kit.sweeper.sweep()).minutes == 2


async def test_runs_are_bounded_and_resume() -> None:
    """A run handles at most ``max_entries``; the next run picks up where it stopped."""
    kit = Kit(queue=FakeQueue())
    sweeper = Sweeper(
        kit.store, kit.index, kit.queue, kit.admission, kit.timers, clock=kit.clock, page_size=5, max_entries=5
    )
    await sweeper.sweep()
    ids = [await _submit_and_lose_message(kit, f"user{n}@fabrikam.com") for n in range(12)]
    kit.pass_time(kit.timers.queued_grace + 90)
    first = await sweeper.sweep()
    assert not first.complete and len(first.requeued) == 5
    runs = [await sweeper.sweep() for _ in range(2)]
    # 12 entries at 5 a run: the third run finishes them, and every lost message is queued again.
    assert [len(r.requeued) for r in runs] == [5, 2] and runs[-1].complete
    assert sorted(set(kit.queue.messages) & set(ids)) == sorted(ids)


async def test_a_received_record_whose_message_was_lost_is_found_by_its_minute() -> None:
    """Intake wrote the record, its message never arrived, and no due entry exists: the sweeper reads the
    received records of the minute one grace ago (the minute in the id) and queues it; it is then invited."""
    kit = Kit()
    await kit.sweeper.sweep()  # the cursor starts here
    sid = await kit.submit(admit=False)
    kit.queue.sent.clear()  # the message is lost
    assert kit.index.entries() == []
    kit.pass_time(kit.timers.queued_grace + 120)
    report = await kit.sweeper.sweep()
    assert sid in report.requeued and kit.queue.messages == [sid]
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED
