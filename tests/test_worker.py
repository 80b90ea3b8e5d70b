"""The invitation state machine, over an in-memory store with real ETag semantics."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from shared.errors import ConcurrencyConflict, PermanentGraphError, SignupBusy, TransientGraphError
from shared.graph.directory import InvitationOptions
from shared.lifecycle.intake import Intake
from shared.lifecycle.models import Status, utcnow
from shared.lifecycle.validation import SignupForm
from shared.lifecycle.worker import Delivery, InvitationWorker, Outcome
from tests.fakes import FakeDirectory, FakeQueue, FakeStore

FORM = SignupForm("sam@fabrikam.com", "Sam Guest", "Fabrikam", None)
OPTIONS = InvitationOptions(redirect_url="https://myapps.microsoft.com")


async def _queued(store: FakeStore) -> str:
    queue = FakeQueue()
    signup = await Intake(store, queue).submit(FORM)
    assert queue.messages == [signup.id]
    return signup.id


def _worker(store: FakeStore, directory: FakeDirectory, lease: float = 120.0) -> InvitationWorker:
    return InvitationWorker(store, directory, OPTIONS, lease_seconds=lease)


async def test_success_records_the_invitation() -> None:
    """queued → inviting → invited, with Graph's ids, status and redeem URL stored."""
    store, directory = FakeStore(), FakeDirectory()
    sid = await _queued(store)
    assert await _worker(store, directory).process(Delivery(sid, 1, 5)) is Outcome.INVITED
    record = store.records[sid]
    assert record.status is Status.INVITED
    assert (record.invitation_id, record.invited_user_id, record.redeem_url) == (
        "inv-1",
        "user-1",
        "https://login.example/redeem/1",
    )
    assert record.attempts == 1 and record.lease_until is None
    assert [s.status for s in store.writes] == [Status.QUEUED, Status.INVITING, Status.INVITED]
    assert directory.invitations[0].email == "sam@fabrikam.com"
    assert directory.invitations[0].options.redirect_url == OPTIONS.redirect_url


async def test_redelivery_of_a_finished_request_is_a_no_op() -> None:
    """A message for an invited sign-up does nothing and invites nobody."""
    store, directory = FakeStore(), FakeDirectory()
    sid = await _queued(store)
    worker = _worker(store, directory)
    await worker.process(Delivery(sid, 1, 5))
    assert await worker.process(Delivery(sid, 2, 5)) is Outcome.ALREADY_DONE
    assert len(directory.invitations) == 1


async def test_concurrent_deliveries_invite_once() -> None:
    """Two deliveries racing for the same sign-up: one invites, the other backs off."""
    store, directory = FakeStore(), FakeDirectory(delay=0.05)
    sid = await _queued(store)
    worker = _worker(store, directory)
    results = await asyncio.gather(
        worker.process(Delivery(sid, 1, 5)), worker.process(Delivery(sid, 1, 5)), return_exceptions=True
    )
    assert len(directory.invitations) == 1
    assert sorted(type(r).__name__ for r in results) == ["Outcome", "SignupBusy"]
    assert store.records[sid].status is Status.INVITED


async def test_live_lease_makes_a_redelivery_wait() -> None:
    """A sign-up another delivery is inviting right now is not touched."""
    store, directory = FakeStore(), FakeDirectory()
    sid = await _queued(store)
    record = store.records[sid]
    store.records[sid] = dataclasses.replace(
        record, status=Status.INVITING, lease_until=utcnow() + timedelta(seconds=60)
    )
    with pytest.raises(SignupBusy) as info:
        await _worker(store, directory).process(Delivery(sid, 2, 5))
    assert 0 < (info.value.retry_after or 0) <= 60
    assert directory.invitations == []


async def test_expired_lease_is_a_new_attempt() -> None:
    """After a worker died mid-call, the next delivery claims again once the lease has expired."""
    store, directory = FakeStore(), FakeDirectory()
    sid = await _queued(store)
    record = store.records[sid]
    store.records[sid] = dataclasses.replace(
        record, status=Status.INVITING, attempts=1, lease_until=utcnow() - timedelta(seconds=1)
    )
    assert await _worker(store, directory).process(Delivery(sid, 2, 5)) is Outcome.INVITED
    assert store.records[sid].attempts == 2
    assert len(directory.invitations) == 1


async def test_permanent_error_is_recorded_and_ends_the_message() -> None:
    """A 403 from Graph becomes failed with Graph's code; the message is not retried."""
    store = FakeStore()
    error = PermanentGraphError(
        "Insufficient privileges", code="Authorization_RequestDenied", status=403, request_id="r1"
    )
    sid = await _queued(store)
    assert await _worker(store, FakeDirectory([error])).process(Delivery(sid, 1, 5)) is Outcome.FAILED
    record = store.records[sid]
    assert record.status is Status.FAILED
    assert record.error_code == "Authorization_RequestDenied"
    assert record.graph_request_id == "r1"
    view = record.public_view()
    assert view["error"]["code"] == "Authorization_RequestDenied"
    assert "privileges" not in view["error"]["message"]  # Graph's own text stays internal


async def test_transient_error_releases_the_lease_and_raises() -> None:
    """A 503 raises for the host to redeliver; the next delivery may claim at once and succeed."""
    store = FakeStore()
    directory = FakeDirectory([TransientGraphError("unavailable", code="serviceNotAvailable", status=503)])
    sid = await _queued(store)
    worker = _worker(store, directory)
    with pytest.raises(TransientGraphError):
        await worker.process(Delivery(sid, 1, 5))
    record = store.records[sid]
    assert record.status is Status.INVITING and record.lease_until is None
    assert record.error_code == "serviceNotAvailable"
    assert await worker.process(Delivery(sid, 2, 5)) is Outcome.INVITED
    assert store.records[sid].error_code is None
    assert len(directory.invitations) == 2  # one POST per attempt, two attempts


async def test_last_delivery_records_failure_before_raising() -> None:
    """On the last delivery a transient error is recorded as failed, then re-raised (poison)."""
    store = FakeStore()
    directory = FakeDirectory([TransientGraphError("throttled", code="TooManyRequests", status=429)])
    sid = await _queued(store)
    with pytest.raises(TransientGraphError):
        await _worker(store, directory).process(Delivery(sid, 5, 5))
    record = store.records[sid]
    assert record.status is Status.FAILED and record.error_code == "TooManyRequests"


async def test_unexpected_error_on_last_delivery_is_recorded_too() -> None:
    """Even a bug ends in a visible failed state rather than a stuck sign-up."""
    store = FakeStore()
    sid = await _queued(store)
    with pytest.raises(ZeroDivisionError):
        await _worker(store, FakeDirectory([ZeroDivisionError()])).process(Delivery(sid, 5, 5))
    assert store.records[sid].status is Status.FAILED
    assert store.records[sid].error_code == "InternalError"


async def test_missing_record_is_dropped() -> None:
    """A message whose record is gone invites nobody."""
    directory = FakeDirectory()
    assert await _worker(FakeStore(), directory).process(Delivery("x" * 22, 1, 5)) is Outcome.MISSING
    assert directory.invitations == []


async def test_claim_retries_after_losing_an_etag_race() -> None:
    """If the record changes between read and claim, the worker re-reads and decides again."""
    store, directory = FakeStore(), FakeDirectory()
    sid = await _queued(store)

    def finish_elsewhere(_: object) -> None:
        rec = store.records[sid]
        store.records[sid] = dataclasses.replace(rec, status=Status.INVITED, etag='W/"elsewhere"')

    store.before_replace = finish_elsewhere
    assert await _worker(store, directory).process(Delivery(sid, 1, 5)) is Outcome.ALREADY_DONE
    assert directory.invitations == []


async def test_settle_conflict_keeps_the_invitation() -> None:
    """A conflicting write while inviting is re-read and the result still recorded."""
    store, directory = FakeStore(), FakeDirectory()
    sid = await _queued(store)
    worker = _worker(store, directory)
    original_invite = directory.invite

    async def invite_and_touch(invitation):  # type: ignore[no-untyped-def]
        result = await original_invite(invitation)
        rec = store.records[sid]
        store.records[sid] = dataclasses.replace(rec, etag='W/"touched"')
        return result

    directory.invite = invite_and_touch  # type: ignore[method-assign]
    assert await worker.process(Delivery(sid, 1, 5)) is Outcome.INVITED
    assert store.records[sid].status is Status.INVITED


async def test_poison_finaliser_fails_stuck_signups_only() -> None:
    """A sign-up left non-terminal becomes failed; finished and leased ones are left alone."""
    store, directory = FakeStore(), FakeDirectory()
    worker = _worker(store, directory)
    stuck = await _queued(store)
    assert await worker.finalise_poisoned(stuck) is Outcome.FAILED
    assert store.records[stuck].error_code == "DeliveryExhausted"

    done = await _queued(store)
    await worker.process(Delivery(done, 1, 5))
    assert await worker.finalise_poisoned(done) is Outcome.ALREADY_DONE

    leased = await _queued(store)
    rec = store.records[leased]
    store.records[leased] = dataclasses.replace(
        rec, status=Status.INVITING, lease_until=utcnow() + timedelta(seconds=30)
    )
    with pytest.raises(SignupBusy):
        await worker.finalise_poisoned(leased)


async def test_intake_rolls_back_when_enqueue_fails() -> None:
    """No half-made request: the record is removed again when the message cannot be queued."""
    store = FakeStore()
    with pytest.raises(Exception, match="enqueue failed"):
        await Intake(store, FakeQueue(fail=True)).submit(FORM)
    assert store.records == {}


async def test_public_status_never_leaks_private_fields() -> None:
    """The anonymous view has exactly id, status, times and error."""
    store = FakeStore()
    sid = await _queued(store)
    await _worker(store, FakeDirectory()).process(Delivery(sid, 1, 5))
    view = await Intake(store, FakeQueue()).public_status(sid)
    assert view is not None
    assert set(view) == {"id", "status", "createdAt", "updatedAt", "error"}
    text = repr(view)
    assert "fabrikam" not in text and "redeem" not in text and "user-1" not in text
    assert await Intake(store, FakeQueue()).public_status("../etc/passwd") is None


def test_conflict_is_a_storage_error() -> None:
    """ConcurrencyConflict sits under StorageError in the exception tree."""
    from shared.errors import StorageError

    assert issubclass(ConcurrencyConflict, StorageError)
