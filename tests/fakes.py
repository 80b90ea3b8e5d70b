"""Hand-written fakes of the storage and directory protocols (no mocks)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from shared.errors import ConcurrencyConflict, StorageError
from shared.graph.directory import DirectoryUser, Invitation, InvitationResult, MailMessage
from shared.lifecycle.models import Signup, Status
from shared.lifecycle.store import AddressClaim, DueEntry
from shared.lifecycle.transitions import check_edge
from tests.fake_guests import FakeGuestCalls


class FakeStore:
    """``SignupStore`` in memory, with real ETag semantics and injectable failures."""

    def __init__(self) -> None:
        self.records: dict[str, Signup] = {}
        self._etags = itertools.count(1)
        self.fail_create = False
        self.fail_delete = False
        self.fail_replace = 0  # the next N replaces raise StorageError
        self.land_then_conflict = 0  # the next N replaces land, then report a conflict (an SDK retry)
        self.writes: list[Signup] = []
        # Called before each replace; lets a test change the record underneath.
        self.before_replace: Callable[[Signup], None] | None = None

    def _stamp(self, signup: Signup) -> Signup:
        stamped = dataclasses.replace(signup, etag=f'W/"{next(self._etags)}"', origin=signup.status)
        self.records[signup.id] = stamped
        self.writes.append(stamped)
        return stamped

    async def create(self, signup: Signup) -> Signup:
        if self.fail_create:
            raise StorageError("create failed")
        if signup.id in self.records:
            raise ConcurrencyConflict("exists")
        check_edge(None, signup.status)
        return self._stamp(signup)

    async def get(self, signup_id: str) -> Signup | None:
        await asyncio.sleep(0)
        return self.records.get(signup_id)

    async def replace(self, signup: Signup) -> Signup:
        if self.before_replace is not None:
            hook, self.before_replace = self.before_replace, None
            hook(signup)
        await asyncio.sleep(0)
        if self.fail_replace:
            self.fail_replace -= 1
            raise StorageError("replace failed")
        current = self.records.get(signup.id)
        if current is None or current.etag != signup.etag:
            raise ConcurrencyConflict("etag mismatch")
        check_edge(signup.origin, signup.status)
        stamped = self._stamp(signup)
        if self.land_then_conflict:
            self.land_then_conflict -= 1
            raise ConcurrencyConflict("etag mismatch on the retried request")
        return stamped

    async def delete(self, signup_id: str) -> None:
        if self.fail_delete:
            raise StorageError("delete failed")
        self.records.pop(signup_id, None)

    async def received_in(self, bucket: str) -> list[Signup]:
        return [s for s in self.records.values() if s.id.startswith(bucket) and s.status is Status.RECEIVED]

    async def failed(self, since: datetime | None, until: datetime | None) -> AsyncIterator[Signup]:
        for signup in list(self.records.values()):
            after = since is None or signup.created_at >= since
            before = until is None or signup.created_at < until
            if signup.status is Status.FAILED and after and before:
                yield signup


class FakeAddressBook:
    """``AddressBook`` in memory with ETags."""

    def __init__(self) -> None:
        self.claims: dict[str, AddressClaim] = {}
        self._etags = itertools.count(1)

    async def insert(self, key: str, signup_id: str) -> bool:
        await asyncio.sleep(0)
        if key in self.claims:
            return False
        self.claims[key] = AddressClaim(key, signup_id, f"a{next(self._etags)}")
        return True

    async def get(self, key: str) -> AddressClaim | None:
        await asyncio.sleep(0)
        return self.claims.get(key)

    async def take_over(self, claim: AddressClaim, signup_id: str) -> bool:
        await asyncio.sleep(0)
        current = self.claims.get(claim.key)
        if current is None or current.etag != claim.etag:
            return False
        self.claims[claim.key] = AddressClaim(claim.key, signup_id, f"a{next(self._etags)}")
        return True


class FakeDueIndex:
    """``DueIndex`` in memory: minute → {sign-up id: nudges}, plus the cursor."""

    def __init__(self) -> None:
        self.minutes: dict[str, dict[str, int]] = {}
        self.bucket: str | None = None
        self._etag = 0
        self.fail_page = False

    def entries(self) -> list[DueEntry]:
        """Every entry, oldest minute first."""
        return [DueEntry(b, sid, n) for b in sorted(self.minutes) for sid, n in self.minutes[b].items()]

    async def add(self, entry: DueEntry) -> None:
        self.minutes.setdefault(entry.bucket, {})[entry.signup_id] = entry.nudges

    async def page(self, bucket: str, limit: int) -> list[DueEntry]:
        if self.fail_page:
            raise StorageError("index unavailable")
        return [DueEntry(bucket, sid, n) for sid, n in list(self.minutes.get(bucket, {}).items())[:limit]]

    async def remove(self, entries: list[DueEntry]) -> None:
        for entry in entries:
            self.minutes.get(entry.bucket, {}).pop(entry.signup_id, None)

    async def cursor(self) -> tuple[str | None, str | None]:
        return self.bucket, (str(self._etag) if self.bucket else None)

    async def advance(self, bucket: str, etag: str | None) -> str | None:
        if (str(self._etag) if self.bucket else None) != etag:
            return None
        self.bucket, self._etag = bucket, self._etag + 1
        return str(self._etag)


class FakeQueue:
    """``SignupQueue`` in memory: (sign-up id, delay) in the order sent."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, float]] = []
        self.fail = fail

    @property
    def messages(self) -> list[str]:
        """The sign-up ids sent, in order."""
        return [sid for sid, _ in self.sent]

    async def enqueue(self, signup_id: str, delay: float = 0.0) -> None:
        if self.fail:
            raise StorageError("enqueue failed")
        self.sent.append((signup_id, delay))


class Clock:
    """A settable clock for the lifecycle's timers."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time on."""
        self.now += timedelta(seconds=seconds)


# An outcome for one invite call: None (success), an exception raised before Graph acts,
# or ("acted", exc): Graph creates the guest, then the answer is lost as ``exc``.
Outcome = BaseException | tuple[str, BaseException] | None


class FakeDirectory(FakeGuestCalls):
    """``Directory`` with a small directory of users, answering invitations from a script of outcomes."""

    def __init__(self, outcomes: list[Outcome] | None = None, delay: float = 0.0) -> None:
        self.invitations: list[Invitation] = []
        self.outcomes = list(outcomes or [])
        self.delay = delay
        self.users: dict[str, DirectoryUser] = {}  # by lower-cased mail
        self.lookups = 0
        self.lookup_error: BaseException | None = None
        self._acted: list[bool] = []
        self.group_calls: list[tuple[str, str]] = []
        self.group_outcomes: list[BaseException | None] = []
        self.members: set[tuple[str, str]] = set()
        self.sent_mails: list[tuple[str, MailMessage]] = []
        self.mail_outcomes: list[Outcome] = []
        self.domains = frozenset({"contoso.com", "contoso.onmicrosoft.com"})

    def mails(self, address: str) -> int:
        """How many invitation mails Microsoft would have sent to ``address`` (acted, with a message)."""
        return sum(1 for inv in self.acted if inv.email == address and inv.options.send_message)

    @property
    def acted(self) -> list[Invitation]:
        return [inv for inv, acted in zip(self.invitations, self._acted, strict=True) if acted]

    def add_user(self, mail: str, user_type: str = "Member", state: str | None = None) -> DirectoryUser:
        """Put a user into the directory (a member, or a guest with an external state)."""
        user = DirectoryUser(f"user-{len(self.users) + 1}", user_type, mail, mail, None, state)
        self.users[mail.lower()] = user
        return user

    async def invite(
        self, invitation: Invitation, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> InvitationResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        if fence is not None:
            await fence()
        self.invitations.append(invitation)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        acted = outcome is None or isinstance(outcome, tuple)
        self._acted.append(acted)
        if acted:
            user = self.users.get(invitation.email.lower()) or self.add_user(
                invitation.email, "Guest", "PendingAcceptance"
            )
        if isinstance(outcome, tuple):
            raise outcome[1]
        if outcome is not None:
            raise outcome
        n = len(self.invitations)
        return InvitationResult(
            invitation_id=f"inv-{n}",
            invited_user_id=user.id,
            status="PendingAcceptance",
            redeem_url=f"https://login.example/redeem/{n}",
            request_id=f"req-{n}",
        )

    async def find_users_by_email(self, email: str) -> list[DirectoryUser]:
        self.lookups += 1
        if self.lookup_error is not None:
            error, self.lookup_error = self.lookup_error, None
            raise error
        user = self.users.get(email.lower())
        return [user] if user else []

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        return next((u for u in self.users.values() if user_id in (u.id, u.user_principal_name)), None)

    async def set_user_type(self, user_id: str, user_type: str, *, priority: str = "normal") -> None:
        user = next(u for u in self.users.values() if u.id == user_id)
        self.users[(user.mail or "").lower()] = dataclasses.replace(user, user_type=user_type)

    async def add_group_member(self, group_id: str, user_id: str) -> None:
        self.group_calls.append((group_id, user_id))
        outcome = self.group_outcomes.pop(0) if self.group_outcomes else None
        if outcome is not None:
            raise outcome
        self.members.add((group_id, user_id))

    async def send_mail(self, sender: str, message: MailMessage) -> None:
        """Records the mail; a scripted ``(True, error)`` sends it and then loses the answer."""
        outcome = self.mail_outcomes.pop(0) if self.mail_outcomes else None
        if outcome is None or isinstance(outcome, tuple):
            self.sent_mails.append((sender, message))
        if isinstance(outcome, tuple):
            raise outcome[1]
        if outcome is not None:
            raise outcome

    async def verified_domains(self) -> frozenset[str]:
        return self.domains
