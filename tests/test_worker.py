"""The invitation state machine over in-memory stores with real ETag semantics and a settable clock."""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import (
    AmbiguousGraphError,
    ConcurrencyConflict,
    PermanentGraphError,
    StorageError,
    TransientGraphError,
    WriteDeferred,
)
from shared.lifecycle.models import DirectoryBefore, Status, new_signup_id
from shared.lifecycle.worker import MAX_FAULTS, Outcome
from tests.fakes import FakeDirectory
from tests.lifecycle_kit import Kit

UNAVAILABLE = TransientGraphError("down", code="serviceNotAvailable", status=503)


def ambiguous() -> AmbiguousGraphError:
    return AmbiguousGraphError("answer lost", code="Timeout")


async def test_success_records_the_invitation() -> None:
    """queued → inviting → invited, with Graph's ids, redeem URL, a mail and the directory's prior state."""
    kit = Kit()
    sid = await kit.submit()
    assert await kit.worker.process(sid) is Outcome.INVITED
    record = kit.record(sid)
    assert record.status is Status.INVITED
    assert (record.invitation_id, record.redeem_url) == ("inv-1", "https://login.example/redeem/1")
    assert record.invited_user_id == kit.directory.users["sam@fabrikam.com"].id
    assert record.attempts == 1 and record.lease_until is None and record.due_at is None
    assert record.directory_before is DirectoryBefore.ABSENT and record.invitation_mailed is True
    assert record.invited_at == kit.clock.now
    # Created received by intake, admitted queued, claimed by the fence, then the outcome.
    assert [s.status for s in kit.store.writes] == [Status.RECEIVED, Status.QUEUED, Status.INVITING, Status.INVITED]
    assert kit.directory.mails("sam@fabrikam.com") == 1


async def test_redelivery_of_a_finished_request_is_a_no_op() -> None:
    """A message for an invited sign-up does nothing and invites nobody."""
    kit = Kit()
    sid = await kit.submit()
    await kit.worker.process(sid)
    assert await kit.worker.process(sid) is Outcome.ALREADY_DONE
    assert len(kit.directory.invitations) == 1


async def test_concurrent_deliveries_invite_once() -> None:
    """Two deliveries of one sign-up at once: the fence lets one POST; the other finds it taken and stands down
    (rescheduled for the lease's end, or done when the winner already finished)."""
    kit = Kit(directory=FakeDirectory(delay=0.01))
    sid = await kit.submit()
    kit.queue.sent.clear()
    results = await asyncio.gather(kit.worker.process(sid), kit.worker.process(sid))
    assert results.count(Outcome.INVITED) == 1
    assert set(results) - {Outcome.INVITED} <= {Outcome.RESCHEDULED, Outcome.ALREADY_DONE}
    assert len(kit.directory.invitations) == 1
    for _, delay in kit.queue.sent:
        assert 0 < delay <= kit.timers.lease + 1


async def test_live_lease_costs_no_delivery() -> None:
    """A delivery that finds work in progress re-enqueues itself for the lease's end and completes normally."""
    kit = Kit()
    sid = await kit.submit()
    kit.queue.sent.clear()
    record = kit.record(sid)
    kit.store.records[sid] = record.evolve(status=Status.INVITING, lease_until=kit.clock.now.replace(minute=1))
    kit.store.records[sid] = kit.store.records[sid].evolve(etag=record.etag)
    assert await kit.worker.process(sid) is Outcome.RESCHEDULED
    assert kit.directory.invitations == []
    [(_, delay)] = kit.queue.sent
    assert delay == pytest.approx(61, abs=1)


async def test_transient_error_schedules_a_retry_with_backoff() -> None:
    """Graph unavailable: retrying with a due time, the message re-enqueued with that delay, nothing raised."""
    kit = Kit(directory=FakeDirectory([UNAVAILABLE, UNAVAILABLE, None]))
    sid = await kit.submit()
    kit.queue.sent.clear()
    assert await kit.worker.process(sid) is Outcome.RESCHEDULED
    record = kit.record(sid)
    assert record.status is Status.RETRYING and record.error_code == "serviceNotAvailable"
    assert record.lease_until is None and record.maybe_invited is False
    assert kit.queue.sent == [(sid, 5.0)]  # half the initial 10 s with zero jitter
    assert record.public_view()["status"] == "retrying" and record.public_view()["nextAttemptAt"]
    kit.pass_time(5)
    assert await kit.deliver_due() == [Outcome.RESCHEDULED]
    assert kit.queue.sent == [(sid, 10.0)]  # doubled
    kit.pass_time(10)
    assert await kit.deliver_due() == [Outcome.INVITED]
    assert kit.directory.mails("sam@fabrikam.com") == 1


async def test_backoff_is_capped_and_jittered() -> None:
    """The delay doubles up to the cap; jitter spreads it over the upper half."""
    timers = Kit().timers
    assert timers.backoff(1, 0.0) == 5 and timers.backoff(1, 0.999) == pytest.approx(10, abs=0.01)
    assert timers.backoff(20, 0.0) == timers.retry_max / 2
    assert timers.backoff(20, 0.999) <= timers.retry_max


async def test_early_message_is_rescheduled_not_acted_on() -> None:
    """A message arriving before the retry is due (a duplicate, say) re-enqueues for the due time."""
    kit = Kit(directory=FakeDirectory([UNAVAILABLE]))
    sid = await kit.submit()
    await kit.worker.process(sid)
    kit.queue.sent.clear()
    assert await kit.worker.process(sid) is Outcome.RESCHEDULED
    assert len(kit.directory.invitations) == 1
    assert kit.queue.sent == [(sid, 5.0)]


async def test_outage_longer_than_the_host_budget_still_ends_invited() -> None:
    """Graph down for 20 minutes (far past 5 deliveries 10 s apart): the sign-up keeps trying and is invited."""
    kit = Kit(directory=FakeDirectory([UNAVAILABLE] * 8))
    sid = await kit.submit()
    await kit.run_until_quiet()
    record = kit.record(sid)
    assert record.status is Status.INVITED and record.attempts == 9
    assert kit.directory.mails("sam@fabrikam.com") == 1


async def test_deadline_ends_failed_with_the_last_transient_code() -> None:
    """Past the deadline a sign-up ends failed with the code of its last transient failure."""
    kit = Kit(directory=FakeDirectory([UNAVAILABLE] * 100))
    sid = await kit.submit()
    await kit.run_until_quiet(step=30, horizon=kit.timers.deadline * 2)
    record = kit.record(sid)
    assert record.status is Status.FAILED and record.error_code == "serviceNotAvailable"
    assert record.public_view()["error"]["code"] == "serviceNotAvailable"
    assert kit.queue.sent == []


async def test_permanent_error_is_recorded() -> None:
    """A refusal ends failed with Graph's code and no retry."""
    denied = PermanentGraphError("no", code="Authorization_RequestDenied", status=403, request_id="r1")
    kit = Kit(directory=FakeDirectory([denied]))
    sid = await kit.submit()
    kit.queue.sent.clear()
    assert await kit.worker.process(sid) is Outcome.FAILED
    record = kit.record(sid)
    assert (record.status, record.error_code, record.graph_request_id) == (
        Status.FAILED,
        "Authorization_RequestDenied",
        "r1",
    )
    assert kit.queue.sent == []


async def test_lost_answer_is_recovered_without_a_second_mail() -> None:
    """Graph acts but its answer is lost: the next attempt reads the directory and re-invites silently."""
    kit = Kit(directory=FakeDirectory([("acted", ambiguous())]))
    sid = await kit.submit()
    kit.queue.sent.clear()
    assert await kit.worker.process(sid) is Outcome.RESCHEDULED
    record = kit.record(sid)
    assert record.maybe_invited is True and record.status is Status.RETRYING
    [(_, delay)] = kit.queue.sent
    assert delay >= kit.timers.ambiguous_delay
    await kit.run_until_quiet()
    record = kit.record(sid)
    assert record.status is Status.INVITED and record.redeem_url is not None
    assert [inv.options.send_message for inv in kit.directory.invitations] == [True, False]
    assert kit.directory.mails("sam@fabrikam.com") == 1 and record.invitation_mailed is False


async def test_ambiguous_failure_where_graph_did_not_act_mails_once() -> None:
    """An ambiguous failure where Graph in fact did nothing: the read finds nobody, the retry mails normally."""
    kit = Kit(directory=FakeDirectory([ambiguous()]))
    sid = await kit.submit()
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED
    assert [inv.options.send_message for inv in kit.directory.invitations] == [True, True]
    assert kit.directory.mails("sam@fabrikam.com") == 1


async def test_transient_after_ambiguous_keeps_the_doubt() -> None:
    """A 429 after a lost answer does not clear maybe_invited: the later attempt still invites silently."""
    throttled = TransientGraphError("slow down", code="TooManyRequests", status=429, retry_after=3)
    kit = Kit(directory=FakeDirectory([("acted", ambiguous()), throttled]))
    sid = await kit.submit()
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED
    assert [inv.options.send_message for inv in kit.directory.invitations] == [True, False, False]
    assert kit.directory.mails("sam@fabrikam.com") == 1


async def test_storage_failure_after_the_invitation_leaves_no_stuck_lease() -> None:
    """Graph invited, but recording it failed: the lease expires, the next attempt recovers silently."""
    kit = Kit()
    sid = await kit.submit()
    kit.queue.sent.clear()
    original = kit.store.replace

    calls = 0

    async def failing_second(signup):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StorageError("table unavailable")
        return await original(signup)

    kit.store.replace = failing_second  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        await kit.worker.process(sid)
    assert kit.record(sid).status is Status.INVITING
    # The host redelivers: the lease is live, so the delivery reschedules for its end.
    assert await kit.worker.process(sid) is Outcome.RESCHEDULED
    await kit.run_until_quiet()
    record = kit.record(sid)
    assert record.status is Status.INVITED and record.redeem_url
    assert kit.directory.mails("sam@fabrikam.com") == 1


async def test_write_that_landed_but_reported_a_conflict_is_recognised() -> None:
    """The SDK retried a claim after a timeout and saw 412: the worker knows the write was its own."""
    kit = Kit()
    sid = await kit.submit()
    kit.store.land_then_conflict = 1
    assert await kit.worker.process(sid) is Outcome.INVITED
    assert len(kit.directory.invitations) == 1


async def test_claim_race_reads_again_and_decides_again() -> None:
    """Someone else claims between our read and our fence's write: we send nothing, re-read, find the live
    lease, and re-enqueue for its end (one message, due when the other claim's lease runs out)."""
    kit = Kit()
    sid = await kit.submit()
    kit.queue.sent.clear()
    lease = kit.clock.now.replace(minute=2)

    def someone_else_claims(_: object) -> None:
        current = kit.record(sid)
        kit.store.records[sid] = current.evolve(status=Status.INVITING, lease_until=lease, etag='W/"other"')

    kit.store.before_replace = someone_else_claims
    assert await kit.worker.process(sid) is Outcome.RESCHEDULED
    assert kit.directory.invitations == []
    [(message, delay)] = kit.queue.sent
    assert message == sid and delay == pytest.approx((lease - kit.clock.now).total_seconds() + 1, abs=0.01)


async def test_address_of_a_member_fails_with_a_clear_code() -> None:
    """The pre-check finds a member of this tenant: failed ExistingMember, no invitation sent."""
    kit = Kit()
    kit.directory.add_user("sam@fabrikam.com", "Member")
    sid = await kit.submit()
    assert await kit.worker.process(sid) is Outcome.FAILED
    record = kit.record(sid)
    assert record.error_code == "ExistingMember" and record.directory_before is DirectoryBefore.MEMBER
    assert kit.directory.invitations == []


async def test_guest_who_redeemed_needs_no_invitation() -> None:
    """An existing guest who already redeemed is invited with no write and no mail."""
    kit = Kit()
    guest = kit.directory.add_user("sam@fabrikam.com", "Guest", "Accepted")
    sid = await kit.submit()
    assert await kit.worker.process(sid) is Outcome.INVITED
    record = kit.record(sid)
    assert record.invited_user_id == guest.id and record.invitation_mailed is False
    assert kit.directory.invitations == []


async def test_pending_guest_is_reinvited_with_a_mail() -> None:
    """A guest who never redeemed (lost the mail) is invited again, with Microsoft's mail."""
    kit = Kit()
    kit.directory.add_user("sam@fabrikam.com", "Guest", "PendingAcceptance")
    sid = await kit.submit()
    assert await kit.worker.process(sid) is Outcome.INVITED
    assert kit.record(sid).directory_before is DirectoryBefore.GUEST_PENDING
    assert [inv.options.send_message for inv in kit.directory.invitations] == [True]


async def test_failed_directory_read_is_retried_before_any_write() -> None:
    """The pre-check read fails: a retry is scheduled and nothing is written to Graph."""
    kit = Kit()
    kit.directory.lookup_error = TransientGraphError("down", code="serviceNotAvailable", status=503)
    sid = await kit.submit()
    kit.queue.sent.clear()
    assert await kit.worker.process(sid) is Outcome.RESCHEDULED
    assert kit.directory.invitations == [] and kit.record(sid).attempts == 0
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED


async def test_pacer_deferral_goes_back_to_the_queue() -> None:
    """No write slot within the pacer's bound: the sign-up waits on the queue for the slot, not in a worker."""
    kit = Kit(directory=FakeDirectory([WriteDeferred(42.0)]))
    sid = await kit.submit()
    kit.queue.sent.clear()
    assert await kit.worker.process(sid) is Outcome.RESCHEDULED
    assert kit.queue.sent == [(sid, 42.0)] and kit.record(sid).maybe_invited is False


async def test_unexpected_error_is_retried_then_given_up() -> None:
    """A bug retries a few times (it may have acted) and then ends failed InternalError, never stuck."""
    kit = Kit(directory=FakeDirectory([RuntimeError("bug")] * 10))
    sid = await kit.submit()
    await kit.run_until_quiet()
    record = kit.record(sid)
    assert record.status is Status.FAILED and record.error_code == "InternalError"
    assert len(kit.directory.invitations) == MAX_FAULTS


async def test_missing_record_is_dropped() -> None:
    """A message whose record is gone does nothing."""
    kit = Kit()
    assert await kit.worker.process("A" * 22) is Outcome.MISSING


async def test_poison_finaliser_requeues_then_gives_up_and_never_raises() -> None:
    """The poison consumer re-enqueues a sign-up that can still finish, fails it after repeated poisonings,
    and swallows storage failures (the sweeper covers them)."""
    kit = Kit()
    sid = await kit.submit()
    kit.queue.sent.clear()
    assert await kit.worker.finalise_poisoned(sid) is Outcome.RESCHEDULED
    assert kit.queue.messages == [sid] and kit.record(sid).faults == 1
    await kit.worker.finalise_poisoned(sid)
    assert await kit.worker.finalise_poisoned(sid) is Outcome.FAILED
    assert kit.record(sid).error_code == "DeliveryExhausted"
    assert await kit.worker.finalise_poisoned(sid) is Outcome.ALREADY_DONE
    other = await kit.submit("alex@fabrikam.com")
    kit.store.fail_replace = 5
    assert await kit.worker.finalise_poisoned(other) is Outcome.RESCHEDULED  # logged, not raised


def test_conflict_is_a_storage_error() -> None:
    """Callers that only care about storage failing catch conflicts too."""
    assert issubclass(ConcurrencyConflict, StorageError)


async def test_an_invited_guest_is_registered_once_for_its_lifecycle() -> None:
    """Issue 22: the worker registers the guest it invited (by user id), and a repeat of the same address,
    linked to the first, registers nobody twice."""
    kit = Kit()
    sid = await kit.submit()
    await kit.run_until_quiet()
    user_id = kit.record(sid).invited_user_id
    assert user_id and list(kit.guests.records) == [user_id]
    await kit.submit()
    await kit.run_until_quiet()
    assert list(kit.guests.records) == [user_id]


async def test_a_message_ahead_of_its_record_comes_back_instead_of_being_lost() -> None:
    """Intake inserts and enqueues together: a delivery that finds no record for a recent id re-enqueues it
    for about the id's age; once the record is there it is invited. A message whose record never came (the
    insert failed and the caller got 503) comes back a few times and is done once the id is older than the
    grace."""
    kit = Kit()
    sid = await kit.submit(admit=False)
    record = kit.store.records.pop(sid)  # the insert has not landed yet
    assert await kit.worker.process(sid) is Outcome.RESCHEDULED
    kit.store.records[sid] = record
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED
    ghost = new_signup_id(kit.clock.now)
    await kit.queue.enqueue(ghost)
    outcomes = []
    for _ in range(20):
        outcomes += await kit.deliver_due()
        kit.pass_time(30)
    assert outcomes[-1] is Outcome.MISSING and len(outcomes) <= 8
    assert ghost not in kit.queue.messages
