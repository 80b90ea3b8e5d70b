"""The bulk conversion behind ``signup-admin convert``: streamed, paced, reported as it goes, resumable.

Input: a CSV with a ``user`` column (object id or UPN) and an optional
``email`` column (the address the user's ``mail`` must hold). The report is a
CSV written and flushed row by row::

    user, outcome, reason, state, userId, mail, at

``outcome`` is a pre-check code (``NotFound``, ``AlreadyExternal``, ``IsGuest``,
``MailMissing``, ``MailInVerifiedDomain``, ``MailMismatch``, ``OnPremisesUpn``),
``WouldConvert`` (dry run), ``Converted``, ``Failed`` (Graph refused), or one of
the in-doubt outcomes a later run looks at again: ``Attempting`` (written, and
synced to disk, before the invitation is sent), ``Unknown`` (the answer was
lost: Graph may have converted) and ``Deferred`` (Graph was unavailable or the
write budget had no room: nothing was sent).

**Resuming never converts a user twice.** A run reads the report first: a user
whose last row is final is skipped; one whose last row is in doubt is checked
again, and if the directory now shows it external, the earlier run converted it:
it is recorded ``Converted`` without another invitation. Users are taken from the
CSV one at a time (a repeated line is processed once), so memory stays flat.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

from ..errors import AmbiguousGraphError, PermanentGraphError, TransientGraphError
from .checks import Code, Verdict
from .converter import ConversionOptions, Converter, is_user_reference

log = logging.getLogger(__name__)

FIELDS: Final = ("user", "outcome", "reason", "state", "userId", "mail", "at")
CONVERTED: Final = "Converted"
WOULD_CONVERT: Final = "WouldConvert"
FAILED: Final = "Failed"
ATTEMPTING: Final = "Attempting"
UNKNOWN: Final = "Unknown"
DEFERRED: Final = "Deferred"
INVALID: Final = "InvalidReference"
RETRIED: Final = frozenset({ATTEMPTING, UNKNOWN, DEFERRED, WOULD_CONVERT})  # a later run looks at these again
MAYBE_SENT: Final = frozenset({ATTEMPTING, UNKNOWN})  # an invitation may have gone out


def read_users(path: Path) -> Iterator[tuple[str, str | None]]:
    """(user, email) from the input CSV, one at a time (a header row ``user[,email]`` is optional)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.reader(handle):
            if not row or not row[0].strip() or row[0].strip().startswith("#"):
                continue
            if row[0].strip().lower() == "user":
                continue
            email = row[1].strip() if len(row) > 1 and row[1].strip() else None
            yield row[0].strip(), email


def count_users(path: Path) -> int:
    """How many users the input names (for the progress bar's total)."""
    return sum(1 for _ in read_users(path))


class Report:
    """The report file: what earlier runs decided, and the rows of this one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.final: set[str] = set()  # users whose last row settles them: skipped
        self.in_doubt: set[str] = set()  # users whose last row says an invitation may have gone out
        if path.exists() and path.stat().st_size:
            with path.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    user, outcome = row.get("user") or "", row.get("outcome") or ""
                    (self.final.discard if outcome in RETRIED else self.final.add)(user)
                    (self.in_doubt.add if outcome in MAYBE_SENT else self.in_doubt.discard)(user)
        new = not path.exists() or path.stat().st_size == 0
        self._handle: IO[str] = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=FIELDS)
        if new:
            self._writer.writeheader()
            self._handle.flush()

    def write(self, user: str, outcome: str, reason: str, verdict: Verdict | None = None, state: str = "") -> None:
        """Append one row and flush it; an ``Attempting`` row is synced to disk before the write it announces."""
        directory_user = verdict.user if verdict is not None else None
        self._writer.writerow(
            {
                "user": user,
                "outcome": outcome,
                "reason": reason,
                "state": state,
                "userId": directory_user.id if directory_user else "",
                "mail": directory_user.mail or "" if directory_user else "",
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        self._handle.flush()
        if outcome == ATTEMPTING:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()


@dataclass
class Summary:
    """What one run did."""

    outcomes: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    interrupted: bool = False


class BulkConversion:
    """Runs the conversion of every user in an input CSV, ``concurrency`` at a time."""

    def __init__(
        self,
        converter: Converter,
        options: ConversionOptions,
        report: Report,
        *,
        dry_run: bool = False,
        concurrency: int = 8,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self._converter = converter
        self._options = options
        self._report = report
        self._dry_run = dry_run
        self._concurrency = concurrency
        self._progress = progress or (lambda _outcome: None)
        self.stop = asyncio.Event()  # set it (e.g. on Ctrl-C) to finish the users in flight and stop
        self.summary = Summary()

    async def run(self, users: Iterator[tuple[str, str | None]]) -> Summary:
        """Convert (or, dry, check) every user; returns when all are done or ``stop`` was set."""
        queue: asyncio.Queue[tuple[str, str | None] | None] = asyncio.Queue(maxsize=self._concurrency * 2)
        seen: set[str] = set()

        async def produce() -> None:
            for user, email in users:
                if self.stop.is_set():
                    self.summary.interrupted = True
                    break
                key = user.lower()
                if key in seen or user in self._report.final:
                    self.summary.skipped += 1
                    self._progress("skipped")
                    continue
                seen.add(key)
                await queue.put((user, email))
            for _ in range(self._concurrency):
                await queue.put(None)

        async def consume() -> None:
            while (item := await queue.get()) is not None:
                outcome = await self._one(*item)
                self.summary.outcomes[outcome] += 1
                self._progress(outcome)

        await asyncio.gather(produce(), *(consume() for _ in range(self._concurrency)))
        return self.summary

    async def _one(self, user: str, email: str | None) -> str:
        report = self._report
        if not is_user_reference(user):
            report.write(user, INVALID, "not an object id (GUID) or user principal name")
            return INVALID
        try:
            verdict = await self._converter.check(user, email)
        except PermanentGraphError as exc:
            report.write(user, FAILED, f"the directory refused the read: {exc.code}")
            return FAILED
        except (TransientGraphError, AmbiguousGraphError) as exc:
            report.write(user, DEFERRED, f"the directory was unavailable: {exc.code}; run again to retry")
            return DEFERRED
        if verdict.code is Code.ALREADY_EXTERNAL and user in report.in_doubt:
            # The interrupted run's invitation went through: record it, send nothing.
            return await self._converted(user, verdict, "converted by an earlier, interrupted run")
        if not verdict.eligible:
            report.write(user, verdict.code.value, verdict.reason, verdict, "unchanged")
            return verdict.code.value
        if self._dry_run:
            report.write(user, WOULD_CONVERT, verdict.reason, verdict, "unchanged")
            return WOULD_CONVERT
        report.write(user, ATTEMPTING, "invitation being sent", verdict)
        try:
            result = await self._converter.convert(verdict, self._options)
        except PermanentGraphError as exc:
            report.write(user, FAILED, f"Graph refused: {exc.code}", verdict, "unchanged")
            return FAILED
        except AmbiguousGraphError as exc:
            report.write(user, UNKNOWN, f"the answer was lost ({exc.code}); run again to find out", verdict)
            return UNKNOWN
        except TransientGraphError as exc:
            report.write(user, DEFERRED, f"not sent ({exc.code}); run again to retry", verdict, "unchanged")
            return DEFERRED
        return await self._converted(user, verdict, f"invitation {result.status or 'sent'}")

    async def _converted(self, user: str, verdict: Verdict, reason: str) -> str:
        state = "external"
        if self._options.set_guest_user_type and verdict.user is not None:
            try:
                if (verdict.user.user_type or "").lower() != "guest":
                    await self._converter.make_guest(verdict.user.id)
                state = "external, userType Guest"
            except (PermanentGraphError, TransientGraphError, AmbiguousGraphError) as exc:
                reason += f"; userType not changed ({exc.code})"
        self._report.write(user, CONVERTED, reason, verdict, state)
        return CONVERTED
