"""The sweeper: finds sign-ups whose timer passed with no live work, and sets them going again.

Intake writes one due-index entry per sign-up (the minute its queued grace ends).
The sweeper, a timer function, reads the minutes that have fully passed, from
its cursor on, in bounded pages, and looks at each entry's sign-up::

    missing, failed, denied, expired, invited ───► drop the entry
      with nothing left to do
    pending_approval past its deadline ──────────► expired
    pending_approval, approvers' mail overdue ───► re-enqueue it (the worker sends the mail)
    pending_approval otherwise ──────────────────► move the entry to its expiry
    invited with groups or a mail left ──────────► as any other overdue sign-up below
    linked, owner present ────────────────────────► drop the entry (the owner has its own)
    linked, owner gone (its intake rolled back) ──► admit it again: own the address, queue it
    not due yet (queued within its grace, lease ──► move the entry to the minute it is due
      live, retry scheduled later)
    past the deadline ────────────────────────────► failed (the last transient code)
    overdue: queued whose message was lost, an ──► re-enqueue it, and look again after a
      expired lease, a retry long overdue,           grace that doubles with each nudge
      an intake orphan

A moved entry is written before the old one is deleted, so every non-final
sign-up always has an entry at or before its due time. Re-enqueueing is safe at
any moment: the worker's state machine ignores or reschedules a message that
comes too early or twice. The cursor is advanced only past minutes whose
entries were all handled; an ETag on the cursor keeps two sweepers from both
advancing it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from ..audit import AuditEntry, AuditLog
from ..errors import ConcurrencyConflict, StorageError
from .intake import Admission, Timers
from .models import Signup, Status, Step, utcnow
from .queue import SignupQueue
from .store import DueEntry, DueIndex, SignupStore, bucket_of, next_bucket
from .worker import PUBLIC_MESSAGES

log = logging.getLogger(__name__)

# Clocks of the instances that write entries may run this far behind the sweeper's.
CLOCK_SKEW: Final = timedelta(seconds=30)
MAX_NUDGE_DELAY: Final = 3600.0


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
        # A first sweep starts at the last passed minute: entries are only ever written for the future.
        minute = next_bucket(cursor) if cursor else last
        while minute <= last and report.minutes < self._max_minutes:
            if report.entries >= self._max_entries:
                report.complete = False
                break
            entries = await self._index.page(minute, min(self._page_size, self._max_entries - report.entries))
            report.entries += len(entries)
            handled = [entry for entry in entries if await self._visit(entry, now, report)]
            await self._index.remove(handled)
            if len(handled) < len(entries):
                report.complete = False  # storage trouble: keep the cursor here, try again next run
                break
            if len(entries) == self._page_size:
                continue  # the minute has more entries
            etag = await self._index.advance(minute, etag)
            if etag is None:
                log.info("sweeper.cursor_moved_elsewhere minute=%s", minute)
                report.complete = False
                break
            report.minutes += 1
            minute = next_bucket(minute)
        log.info(
            "sweeper.swept minutes=%s entries=%s requeued=%s failed=%s revived=%s expired=%s moved=%s dropped=%s "
            "complete=%s",
            report.minutes,
            report.entries,
            len(report.requeued),
            len(report.failed),
            len(report.revived),
            len(report.expired),
            report.moved,
            report.dropped,
            report.complete,
        )
        return report

    async def _visit(self, entry: DueEntry, now: datetime, report: SweepReport) -> bool:
        """Act on one entry; True when the entry can be deleted."""
        try:
            signup = await self._store.get(entry.signup_id)
            if signup is None or signup.status in {Status.FAILED, Status.DENIED, Status.EXPIRED} or self._done(signup):
                report.dropped += 1
                return True
            if signup.status is Status.LINKED:
                return await self._linked(signup, report)
            if signup.status is Status.PENDING_APPROVAL:
                return await self._pending(signup, entry, now, report)
            due = self._due(signup)
            if due > now:
                await self._index.add(DueEntry(bucket_of(due), signup.id, entry.nudges))
                report.moved += 1
                return True
            if now >= signup.deadline and signup.status is not Status.INVITED:
                await self._store.replace(
                    signup.evolve(
                        status=Status.FAILED,
                        error_code=signup.error_code or "DeadlineExceeded",
                        error_message=PUBLIC_MESSAGES["transient"],
                        lease_until=None,
                        due_at=None,
                        updated_at=now,
                    )
                )
                report.failed.append(signup.id)
                log.warning("sweeper.deadline signup_id=%s status=%s", signup.id, signup.status.value)
                return True
            await self._queue.enqueue(signup.id)
            delay = min(MAX_NUDGE_DELAY, self._timers.queued_grace * 2 ** (entry.nudges + 1))
            await self._index.add(DueEntry(bucket_of(now + timedelta(seconds=delay)), signup.id, entry.nudges + 1))
            report.requeued.append(signup.id)
            log.warning(
                "sweeper.requeued signup_id=%s status=%s nudges=%s", signup.id, signup.status.value, entry.nudges + 1
            )
            return True
        except (StorageError, ConcurrencyConflict) as exc:
            log.warning("sweeper.entry_failed signup_id=%s error=%s", entry.signup_id, type(exc).__name__)
            return False

    @staticmethod
    def _done(signup: Signup) -> bool:
        """An invited sign-up with no step left (groups, the organisation's mail) needs nothing more."""
        return signup.status is Status.INVITED and not (signup.follow_up_open or signup.org_mail is Step.SENDING)

    async def _pending(self, signup: Signup, entry: DueEntry, now: datetime, report: SweepReport) -> bool:
        """A request waiting for review: expire it at its deadline; until then see its approvers' mail goes."""
        if now >= signup.deadline:
            expired = await self._store.replace(signup.evolve(status=Status.EXPIRED, due_at=None, updated_at=now))
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

    async def _linked(self, signup: Signup, report: SweepReport) -> bool:
        owner = await self._store.get(signup.linked_to or "")
        if owner is not None:
            report.dropped += 1
            return True
        revived = await self._admission.admit(signup, fresh=False)
        report.revived.append(signup.id)
        log.warning("sweeper.revived signup_id=%s status=%s", signup.id, revived.status.value)
        return True

    def _due(self, signup: Signup) -> datetime:
        if signup.status is Status.INVITING and signup.lease_until is not None:
            return signup.lease_until
        if signup.due_at is not None:
            return signup.due_at
        return signup.created_at + timedelta(seconds=self._timers.queued_grace)
