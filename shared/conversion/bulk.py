"""The bulk conversion behind ``signup-admin convert``: streamed, paced, reported as it goes, resumable.

Each input line is one user reference (object id or UPN). A run reads the report
(``report.ReportState``) first: a reference whose last whole row is settled is
skipped; one in doubt (``Attempting``, ``Unknown``, ``Mailing``) or converted with
work left (``UserTypePending``) is read again, and if the directory now shows it
external, the earlier run converted it: it is recorded ``Converted`` without
another invitation. ``--retry-failed`` also takes up ``Failed`` rows and the
pre-check refusals.

**Nobody is converted twice.** Duplicates are caught by the directory user the
reference resolves to, not by the text of the cell: a user named by object id on
one line and by UPN on another is converted once, the other line is
``Duplicate``. A failed re-read of an in-doubt user keeps it in doubt
(``Unknown``), never ``Deferred``.

**Stopping.** ``stop`` set (the first Ctrl-C): no new invitation starts; the
ones in flight finish and are reported. Cancelling the run (the second Ctrl-C)
stops at once; in-doubt rows stay in doubt. The first authentication or permission
error (401, 403, no token) stops the run the same way and leaves its row unsettled.

**Dry run.** No write to Graph at all: the pre-checks only (GETs), rows to a
separate writer, or none.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from ..errors import AmbiguousGraphError, GraphError, PermanentGraphError
from ..graph.directory import DirectoryUser, InvitationResult
from .checks import Code, Verdict
from .converter import ConversionOptions, Converter, MailChoice, is_user_reference
from .report import (
    ATTEMPTING,
    CONVERTED,
    CONVERTED_PENDING,
    DEFERRED,
    DUPLICATE,
    FAILED,
    IN_DOUBT,
    INVALID,
    MAILING,
    REFUSED,
    RERUN,
    UNKNOWN,
    USER_TYPE_PENDING,
    WOULD_CONVERT,
    Earlier,
    ReportState,
    ReportWriter,
)

log = logging.getLogger(__name__)

STOPPED: Final = "Stopped"  # not reported: the row stays as it was (a stop, or an auth error)
AUTH_CODES: Final = frozenset({"AuthenticationFailed"})


class Mailer(Protocol):
    """The organisation's own mail (``mailing.OrganisationMail``)."""

    async def send(self, user: DirectoryUser, redeem_url: str) -> None: ...


def is_auth_error(exc: GraphError) -> bool:
    """401, 403 or no token: the app's credentials or permissions, the same for every user."""
    return exc.status in (401, 403) or exc.code in AUTH_CODES


@dataclass
class Summary:
    """What one run did."""

    outcomes: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    earlier: Counter[str] = field(default_factory=Counter)  # the outcomes of the users skipped as settled
    interrupted: bool = False
    fatal: GraphError | None = None  # the authentication or permission error that stopped the run

    def exit_code(self) -> int:
        """0 settled as asked; 1 some refused by a pre-check; 2 rerun needed; 3 configuration (permissions)."""
        if self.fatal is not None:
            return 3
        # The whole report counts: a Failed or refused user skipped as settled still needs the admin.
        seen = self.outcomes + self.earlier
        if self.interrupted or any(seen[o] for o in (FAILED, UNKNOWN, DEFERRED, USER_TYPE_PENDING)):
            return 2
        if any(seen[o] for o in REFUSED):
            return 1
        return 0


class _Null:
    def write(self, **cells: str) -> None:
        pass


class BulkConversion:
    """Runs the conversion of every user in an input, ``concurrency`` at a time."""

    def __init__(
        self,
        converter: Converter,
        options: ConversionOptions,
        state: ReportState,
        writer: ReportWriter | None,
        *,
        dry_run: bool = False,
        retry_failed: bool = False,
        concurrency: int = 8,
        mailer: Mailer | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if options.mail is MailChoice.ORGANISATION and mailer is None and not dry_run:
            raise ValueError("the organisation's mail needs a mailer")
        self._converter = converter
        self._options = options
        self._state = state
        self._writer: ReportWriter | _Null = writer if writer is not None else _Null()
        self._dry_run = dry_run
        self._retry_failed = retry_failed
        self._concurrency = concurrency
        self._mailer = mailer
        self._progress = progress or (lambda _outcome: None)
        self._claimed: dict[str, str] = {}  # directory user id -> the reference that took it in this run
        self.stop = asyncio.Event()  # set it (the first Ctrl-C) to start nothing new
        self.summary = Summary()

    def _settled(self, earlier: Earlier | None) -> bool:
        if earlier is None:
            return False
        if earlier.outcome in RERUN or earlier.outcome == WOULD_CONVERT:
            return False
        return not (self._retry_failed and (earlier.outcome == FAILED or earlier.outcome in REFUSED))

    async def run(self, users: Iterator[tuple[str, str | None]]) -> Summary:
        """Convert (or, dry, check) every user; returns when all are done or ``stop`` was set."""
        queue: asyncio.Queue[tuple[str, str | None] | None] = asyncio.Queue(maxsize=self._concurrency)
        seen: set[str] = set()

        async def produce() -> None:
            for user, email in users:
                if self.stop.is_set():
                    break
                key = user.casefold()
                earlier = self._state.by_reference.get(user)
                if key in seen or self._settled(earlier):
                    self.summary.skipped += 1
                    if key not in seen and earlier is not None:
                        self.summary.earlier[earlier.outcome] += 1
                    self._progress("skipped")
                    continue
                seen.add(key)
                await queue.put((user, email))
            for _ in range(self._concurrency):
                await queue.put(None)

        async def consume() -> None:
            while (item := await queue.get()) is not None:
                if self.stop.is_set():
                    continue  # drain without starting anything
                outcome = await self._one(*item)
                if outcome != STOPPED:
                    self.summary.outcomes[outcome] += 1
                    self._progress(outcome)

        await asyncio.gather(produce(), *(consume() for _ in range(self._concurrency)))
        self.summary.interrupted = self.stop.is_set() and self.summary.fatal is None
        return self.summary

    def _fatal(self, exc: GraphError) -> str:
        if self.summary.fatal is None:
            self.summary.fatal = exc
            log.error("convert.stopped code=%s status=%s request_id=%s", exc.code, exc.status, exc.request_id)
        self.stop.set()
        return STOPPED

    def _row(self, reference: str, outcome: str, reason: str, verdict: Verdict | None = None, /, **more: str) -> str:
        user = verdict.user if verdict is not None else None
        self._writer.write(
            user=reference,
            outcome=outcome,
            code=more.pop("code", verdict.code.value if verdict is not None else ""),
            reason=reason,
            userId=user.id if user else "",
            mail=(user.mail or "") if user else "",
            synced="yes" if verdict is not None and verdict.synced else "",
            **more,
        )
        return outcome

    @staticmethod
    def _graph(exc: GraphError) -> dict[str, str]:
        return {"code": exc.code, "graphMessage": str(exc)[:500], "requestId": exc.request_id or ""}

    async def _one(self, reference: str, email: str | None) -> str:
        if not is_user_reference(reference):
            return self._row(reference, INVALID, "not an object id (GUID) or user principal name", code=INVALID)
        earlier = self._state.by_reference.get(reference)
        try:
            verdict = await self._converter.check(reference, email)
        except GraphError as exc:
            if is_auth_error(exc):
                return self._fatal(exc)
            if earlier is not None and earlier.outcome in IN_DOUBT:
                reason = "could not read the user again; still in doubt, run again"
                return self._row(reference, UNKNOWN, reason, **self._graph(exc))
            if isinstance(exc, PermanentGraphError):
                return self._row(reference, FAILED, "the directory refused the read", **self._graph(exc))
            return self._row(reference, DEFERRED, "the directory was unavailable; run again", **self._graph(exc))
        user = verdict.user
        if user is not None:
            twin = self._claimed.setdefault(user.id, reference)
            by_id = self._state.by_user_id.get(user.id)
            if twin != reference:
                return self._row(reference, DUPLICATE, f"the same user as {twin} in this run", verdict)
            own_doubt = earlier is not None and earlier.outcome in IN_DOUBT | CONVERTED_PENDING
            if by_id is not None and by_id.reference != reference and not own_doubt:
                if by_id.outcome in IN_DOUBT | CONVERTED_PENDING:
                    earlier = by_id  # the doubt was recorded under the user's other name
                elif self._settled(by_id):
                    reason = f"the same user as {by_id.reference} ({by_id.outcome}) in an earlier run"
                    return self._row(reference, DUPLICATE, reason, verdict)
        resumed = earlier is not None and earlier.outcome in IN_DOUBT | CONVERTED_PENDING
        if verdict.code is Code.ALREADY_EXTERNAL and resumed and user is not None:
            assert earlier is not None
            return await self._converted(reference, verdict, None, earlier.outcome)
        if not verdict.eligible:
            return self._row(reference, verdict.code.value, verdict.reason, verdict, state="unchanged")
        if self._dry_run:
            return self._row(reference, WOULD_CONVERT, verdict.reason, verdict, state="unchanged")
        if self.stop.is_set():
            return STOPPED
        self._row(reference, ATTEMPTING, "invitation being sent", verdict)
        try:
            result = await self._converter.convert(verdict, self._options)
        except AmbiguousGraphError as exc:
            reason = "the answer was lost; run again to find out"
            return self._row(reference, UNKNOWN, reason, verdict, **self._graph(exc))
        except GraphError as exc:
            if is_auth_error(exc):
                # Graph did not act: nothing is in doubt, and the row is not settled either.
                self._row(reference, DEFERRED, "not sent: the app lacks permission", verdict, **self._graph(exc))
                return self._fatal(exc)
            if isinstance(exc, PermanentGraphError):
                return self._row(reference, FAILED, "Graph refused", verdict, state="unchanged", **self._graph(exc))
            return self._row(reference, DEFERRED, "not sent; run again", verdict, state="unchanged", **self._graph(exc))
        return await self._converted(reference, verdict, result, ATTEMPTING)

    async def _converted(self, reference: str, verdict: Verdict, result: InvitationResult | None, before: str) -> str:
        """Record a converted user: userType when asked, then the mail choice; ``before`` is the last row's outcome."""
        user = verdict.user
        assert user is not None
        how = "invitation " + (result.status or "sent") if result else "converted by an earlier, interrupted run"
        ids = {"invitationId": "", "requestId": ""}
        if result is not None:
            ids = {"invitationId": result.invitation_id or "", "requestId": result.request_id or ""}
        if self._dry_run:
            return self._row(reference, CONVERTED, how + " (recorded by the next live run)", verdict, **ids)
        try:
            await self._converter.settle(user, self._options)
        except GraphError as exc:
            if is_auth_error(exc):
                self._row(reference, USER_TYPE_PENDING, "converted; userType not changed", verdict, **self._graph(exc))
                return self._fatal(exc)
            reason = "converted; userType not changed yet: run again"
            return self._row(reference, USER_TYPE_PENDING, reason, verdict, state="external", **self._graph(exc))
        state = "external, userType Guest" if self._options.set_guest_user_type else "external"
        delivery, redeem_url, note = await self._deliver(reference, verdict, result, before)
        return self._row(
            reference,
            CONVERTED,
            how + note,
            verdict,
            state=state,
            delivery=delivery,
            redeemUrl=redeem_url,
            **ids,
        )

    async def _deliver(
        self, reference: str, verdict: Verdict, result: InvitationResult | None, before: str
    ) -> tuple[str, str, str]:
        """The mail choice carried out: (delivery, redeem URL kept for the admin, note for the reason)."""
        user = verdict.user
        assert user is not None
        mail = self._options.mail
        if mail is MailChoice.MICROSOFT:
            return "microsoft", "", ""  # sent with the invitation, which acted
        if before == MAILING:
            return "organisation-unknown", "", "; the organisation's mail may have gone (never sent twice)"
        if (user.external_user_state or "").lower() == "accepted":
            return "", "", "; already redeemed"
        if result is None or not result.redeem_url:
            try:
                result = await self._converter.fresh_redeem_url(user, self._options)
            except GraphError as exc:
                return "none", "", f"; no redeem URL ({exc.code}): the user can redeem from the tenant's links"
        url = result.redeem_url or ""
        if mail is MailChoice.NONE or self._mailer is None:
            return "none", url, ""
        self._row(reference, MAILING, "the organisation's mail is being sent", verdict)
        try:
            await self._mailer.send(user, url)
        except AmbiguousGraphError as exc:
            return "organisation-unknown", url, f"; the mail's answer was lost ({exc.code})"
        except GraphError as exc:
            return "organisation-failed", url, f"; the mail was not sent ({exc.code}): the redeem URL is kept"
        return "organisation", "", ""
