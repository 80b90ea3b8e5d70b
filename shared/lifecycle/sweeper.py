"""The sweeper: finds requests whose timer passed with no live work, and sets them going again.

Admission writes one due-index entry per request (the minute its queued grace
ends); intake writes none, because a request's id begins with the minute it was
received, so the sweeper also reads the ``received`` records of the minute one
grace ago (``SignupStore.received_in``). The sweeper, a timer function, reads
the minutes that have fully passed, from its cursor on, in bounded pages, and
looks at each entry's request::

    missing, failed, denied, expired, unknown, ──► drop the entry
      invited with nothing left to do
    received (its message was lost) ──────────────► re-enqueue it (the worker admits it)
    pending_approval past its expiry ─────────────► expired
    pending_approval, approvers' mail overdue ────► re-enqueue it (the worker sends the mail)
    pending_approval otherwise ───────────────────► move the entry to its expiry
    linked, owner not final ──────────────────────► look again later
    linked, owner invited or in doubt ────────────► drop the entry (it follows the owner)
    linked, owner ended without inviting ─────────► revive: admitted again, its own attempt
    not due yet (lease live, retry later) ────────► move the entry to the minute it is due
    past the deadline ────────────────────────────► doubt.give_up: failed, or (may have invited)
                                                     queued for a read-only check, unknown at the cap
    overdue (message lost, lease expired, ...) ───► re-enqueue it, and look again after a grace
                                                     that doubles with each nudge, capped at the deadline

A moved entry is written before the old one is deleted, so every non-final
request always has an entry at or before its due time. Re-enqueueing is safe at
any moment: the worker ignores or reschedules a message that comes too early or
twice. An entry that cannot be handled (a storage fault, a record that does not
parse) is moved to a later minute with one more nudge, and after ``MAX_NUDGES``
to the ``skipped`` partition with an error log, so one bad entry never holds the
cursor. Every record it meets is first re-indexed (the store's ``RecordIndex``,
the stats' day index: repaired after a crash between a write and its index
update; a failure keeps the entry), and so is every request the sweeper itself
ends, before its entry goes. The
cursor advances past each minute once handled; an ETag on the
cursor keeps two sweepers from both advancing it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from .. import telemetry
from ..audit import AuditEntry, AuditLog
from ..errors import ConcurrencyConflict, IllegalTransition, StorageError
from . import doubt
from .admission import Admission
from .models import Signup, Status, Step, utcnow
from .queue import SignupQueue
from .store import SKIPPED_BUCKET, DueEntry, DueIndex, SignupStore, bucket_of, bucket_start, index_of, next_bucket
from .timers import Timers
from .transitions import Event
from .writes import write

log = logging.getLogger(__name__)

# Clocks of the instances that write entries may run this far behind the sweeper's.
CLOCK_SKEW: Final = timedelta(seconds=30)
MAX_NUDGE_DELAY: Final = 3600.0
MAX_NUDGES: Final = 8  # an entry that failed this often is set aside (the skipped partition), not retried


@dataclass
class SweepReport:
    """What one sweep did (logged, and returned for tests)."""

    minutes: int = 0
    entries: int = 0
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    revived: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    moved: int = 0
    dropped: int = 0
    skipped: list[str] = field(default_factory=list)
    oldest_due: float | None = None  # seconds since the oldest due entry this run found fell due
    complete: bool = True


class Sweeper:
    """Reads the due index for passed minutes and acts on what it finds."""

    def __init__(
        self,
        store: SignupStore,
        index: DueIndex,
        queue: SignupQueue,
        admission: Admission,
        timers: Timers,
        *,
        clock: Callable[[], datetime] = utcnow,
        page_size: int = 200,
        max_entries: int = 2000,
        max_minutes: int = 24 * 60,
        audit: AuditLog | None = None,
    ) -> None:
        self._audit = audit
        self._store = store
        self._index = index
        self._queue = queue
        self._admission = admission
        self._timers = timers
        self._clock = clock
        self._page_size = page_size
        self._max_entries = max_entries
        self._max_minutes = max_minutes

    async def sweep(self) -> SweepReport:
        """One sweep: every passed minute from the cursor on, within the per-run bounds."""
        report = SweepReport()
        now = self._clock()
        last = bucket_of(now - CLOCK_SKEW - timedelta(minutes=1))
        cursor, etag = await self._index.cursor()
        if cursor is None:
            # The first sweep starts at the last passed minute (entries are written for the future), and
            # writes its cursor before it reads anything: a first run that fails afterwards leaves it, so the
            # next run resumes there instead of starting later and skipping what was due meanwhile.
            cursor = bucket_of(bucket_start(last) - timedelta(minutes=1))
            etag = await self._index.advance(cursor, None)
            if etag is None:  # another sweeper wrote it first
                cursor, etag = await self._index.cursor()
        minute = next_bucket(cursor) if cursor else last
        while minute <= last and report.minutes < self._max_minutes:
            if report.entries >= self._max_entries:
                report.complete = False
                break
            entries = await self._index.page(minute, min(self._page_size, self._max_entries - report.entries))
            report.entries += len(entries)
            if entries and report.oldest_due is None:
                report.oldest_due = (now - bucket_start(minute)).total_seconds()
            handled = [entry for entry in entries if await self._visit(entry, now, report)]
            for entry in entries:
                if entry not in handled and await self._set_aside(entry, now, report):
                    handled.append(entry)
            await self._index.remove(handled)
            if len(handled) < len(entries):
                report.complete = False  # storage trouble: keep the cursor here, try again next run
                break
            if len(entries) == self._page_size:
                continue  # the minute has more entries
            if not await self._received(minute, now, report):
                report.complete = False
                break
            etag = await self._index.advance(minute, etag)
            if etag is None:
                log.info("sweeper.cursor_moved_elsewhere minute=%s", minute)
                report.complete = False
                break
            report.minutes += 1
            minute = next_bucket(minute)
        telemetry.record("sweeper.oldest_due_age", report.oldest_due or 0.0, "s")
        log.info(
            "sweeper.swept minutes=%s entries=%s requeued=%s failed=%s revived=%s expired=%s moved=%s dropped=%s "
            "skipped=%s complete=%s",
            report.minutes,
            report.entries,
            len(report.requeued),
            len(report.failed),
            len(report.revived),
            len(report.expired),
            report.moved,
            report.dropped,
            len(report.skipped),
            report.complete,
        )
        return report

    async def _received(self, minute: str, now: datetime, report: SweepReport) -> bool:
        """Requests received one grace before ``minute`` and never admitted (their message was lost)."""
        grace = timedelta(seconds=self._timers.queued_grace)
        origin = bucket_of(bucket_start(minute) - grace)
        try:
            for signup in await self._store.received_in(origin):
                await self._index.add(DueEntry(bucket_of(now + grace), signup.id))
                await self._queue.enqueue(signup.id)
                report.requeued.append(signup.id)
                log.warning("sweeper.received_requeued signup_id=%s", signup.id)
        except StorageError as exc:
            log.warning("sweeper.received_failed minute=%s error=%s", origin, type(exc).__name__)
            return False
        return True

    async def _set_aside(self, entry: DueEntry, now: datetime, report: SweepReport) -> bool:
        """An entry that could not be handled: retry it in a later minute, or skip it after ``MAX_NUDGES``."""
        try:
            if entry.nudges + 1 >= MAX_NUDGES:
                await self._index.add(DueEntry(SKIPPED_BUCKET, entry.signup_id, entry.nudges + 1))
                report.skipped.append(entry.signup_id)
                log.error("sweeper.entry_skipped signup_id=%s nudges=%s", entry.signup_id, entry.nudges + 1)
            else:
                delay = min(MAX_NUDGE_DELAY, self._timers.queued_grace * 2**entry.nudges)
                later = bucket_of(now + timedelta(seconds=delay))
                await self._index.add(DueEntry(later, entry.signup_id, entry.nudges + 1))
        except StorageError:
            return False
        return True

    async def _visit(self, entry: DueEntry, now: datetime, report: SweepReport) -> bool:
        """Act on one entry; True when the entry can be deleted."""
        try:
            signup = await self._store.get(entry.signup_id)
            final = {Status.FAILED, Status.DENIED, Status.EXPIRED, Status.UNKNOWN}
            settled = signup is None or signup.status in final or self._done(signup)
            if signup is not None:
                # The day index is made to agree with the record first (a crash after a write lost that write's
                # index update); a failure keeps the entry. A settled record is final: its row is overwritten.
                await index_of(self._store).indexed(signup, force=settled)
            if signup is None or settled:
                report.dropped += 1
                return True
            if signup.status is Status.LINKED:
                return await self._linked(signup, entry, now, report)
            if signup.status is Status.PENDING_APPROVAL:
                return await self._pending(signup, entry, now, report)
            due = self._due(signup)
            if due > now:
                await self._index.add(DueEntry(bucket_of(due), signup.id, entry.nudges))
                report.moved += 1
                return True
            if now >= signup.deadline and signup.status is not Status.INVITED:
                return await self._deadline(signup, entry, now, report)
            await self._nudge(signup, entry, now, report)
            return True
        except (StorageError, ConcurrencyConflict, IllegalTransition) as exc:
            log.warning("sweeper.entry_failed signup_id=%s error=%s", entry.signup_id, type(exc).__name__)
            return False

    async def _nudge(self, signup: Signup, entry: DueEntry, now: datetime, report: SweepReport) -> None:
        """Re-enqueue an overdue request; look again after a doubling grace, by its deadline (in doubt: its cap)."""
        await self._queue.enqueue(signup.id)
        delay = min(MAX_NUDGE_DELAY, self._timers.queued_grace * 2 ** (entry.nudges + 1))
        again = now + timedelta(seconds=delay)
        if signup.status is not Status.INVITED:
            # In doubt past the deadline, the request reads until its doubt cap: look again by then.
            end = signup.deadline if signup.deadline > now or not signup.maybe_invited else None
            end = end or signup.deadline + timedelta(seconds=self._timers.doubt_cap)
            if end > now:
                again = min(again, end)
            elif signup.maybe_invited:  # past the cap: the worker ends it (unknown) once a message arrives
                again = min(again, now + timedelta(seconds=self._timers.queued_grace))
        await self._index.add(DueEntry(bucket_of(again), signup.id, entry.nudges + 1))
        report.requeued.append(signup.id)
        log.warning(
            "sweeper.requeued signup_id=%s status=%s nudges=%s", signup.id, signup.status.value, entry.nudges + 1
        )

    async def _deadline(self, signup: Signup, entry: DueEntry, now: datetime, report: SweepReport) -> bool:
        """Past the deadline: the doubt rule decides (``doubt.give_up``)."""
        if signup.maybe_invited:
            # May have invited: only the worker's read-only check may settle it.
            await self._nudge(signup, entry, now, report)
            return True
        # No doubt (a request never admitted cannot have invited): failed here, not after more lost messages.
        event, changes = doubt.give_up(
            signup, now, self._timers, code=signup.error_code or "DeadlineExceeded", kind="transient"
        )
        ended = await write(self._store, signup, event, clock=self._clock, **changes)
        await index_of(self._store).indexed(ended, force=True)  # the entry goes: its index must be right now
        report.failed.append(signup.id)
        log.warning("sweeper.deadline signup_id=%s status=%s", signup.id, signup.status.value)
        return True

    @staticmethod
    def _done(signup: Signup) -> bool:
        """An invited sign-up with no step left (groups, the organisation's mail) needs nothing more."""
        return signup.status is Status.INVITED and not (signup.follow_up_open or signup.org_mail is Step.SENDING)

    async def _pending(self, signup: Signup, entry: DueEntry, now: datetime, report: SweepReport) -> bool:
        """A request waiting for review: expire it at its deadline; until then see its approvers' mail goes."""
        if now >= signup.deadline:
            expired = await write(self._store, signup, Event.EXPIRE, clock=self._clock, due_at=None)
            await index_of(self._store).indexed(expired, force=True)  # the entry goes: its index must be right now
            if self._audit is not None:
                await self._audit.append(AuditEntry(signup.id, now, "expired", "sweeper", {}))
            report.expired.append(expired.id)
            log.info("sweeper.expired signup_id=%s domain=%s", signup.id, signup.domain)
            return True
        mail_waiting = signup.approver_mail in {Step.DUE, Step.SENDING}
        if mail_waiting and (signup.due_at is None or signup.due_at <= now):
            await self._queue.enqueue(signup.id)
            delay = min(MAX_NUDGE_DELAY, self._timers.queued_grace * 2 ** (entry.nudges + 1))
            again = min(now + timedelta(seconds=delay), signup.deadline)
            await self._index.add(DueEntry(bucket_of(again), signup.id, entry.nudges + 1))
            report.requeued.append(signup.id)
            return True
        due = min(signup.due_at, signup.deadline) if mail_waiting and signup.due_at else signup.deadline
        await self._index.add(DueEntry(bucket_of(due), signup.id, entry.nudges))
        report.moved += 1
        return True

    async def _linked(self, signup: Signup, entry: DueEntry, now: datetime, report: SweepReport) -> bool:
        """A linked request follows its owner; it gets its own turn when the owner ended without inviting."""
        owner = await self._store.get(signup.linked_to or "")
        if owner is not None and not owner.status.terminal:
            again = min(now + timedelta(seconds=MAX_NUDGE_DELAY), max(owner.due_at or now, now) + timedelta(minutes=1))
            await self._index.add(DueEntry(bucket_of(again), signup.id, entry.nudges))
            report.moved += 1
            return True
        # Only an owner that invited (or may have) settles its followers. One that failed, whatever the code
        # (a directory fact too), gives each follower its own turn, which ends in its own final state: a
        # later replay of the owner can then strand nobody.
        if owner is not None and owner.status in {Status.INVITED, Status.UNKNOWN}:
            report.dropped += 1
            return True
        revived = await self._admission.revive(signup, Event.REVIVE)
        report.revived.append(signup.id)
        telemetry.count("sweeper.revivals")
        log.warning("sweeper.revived signup_id=%s status=%s", signup.id, revived.status.value)
        return True

    def _due(self, signup: Signup) -> datetime:
        if signup.status is Status.INVITING and signup.lease_until is not None:
            return signup.lease_until
        if signup.due_at is not None:
            return signup.due_at
        return signup.created_at + timedelta(seconds=self._timers.queued_grace)
