"""The simulated world: Table storage, the queue and Graph as in-process fakes with seeded faults.

Every call the lifecycle code makes to one of these is an await point (``World.io``)
where the scheduler may switch to another process or crash this one, and most
can fail: a transient ``StorageError`` before the write, a write that landed and
then reports 412 (``ConcurrencyConflict``, as an SDK retry of a landed write
does) or a ``StorageError``, a crash right after the effect. The fakes also
watch the invariants that are facts about one call (``Violations``): every
status write is checked against ``transitions.EDGES`` as the store sees it, and
every Microsoft and organisation mail is counted per address.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.errors import (
    AmbiguousGraphError,
    ConcurrencyConflict,
    PermanentGraphError,
    StorageError,
    TransientGraphError,
)
from shared.graph.directory import DirectoryUser, Invitation, InvitationResult, MailMessage
from shared.lifecycle.models import Signup, Status
from shared.lifecycle.store import AddressClaim, DueEntry, address_key
from shared.lifecycle.transitions import EDGES, INITIAL

from .core import Point, Scheduler, VirtualClock


@dataclass
class Faults:
    """One seed's fault mix (probabilities per call, and Graph's outages)."""

    storage_error: float = 0.0  # a transient StorageError before the call acts
    landed_conflict: float = 0.0  # a write lands, then reports 412 / exists (the SDK retried it)
    landed_error: float = 0.0  # a write lands, then reports a StorageError
    queue_lost: float = 0.0  # an enqueue that succeeds but whose message never shows
    queue_duplicate: float = 0.0  # an enqueue whose message is delivered twice
    graph_lost: float = 0.0  # a write acts, then the answer is lost (504, dropped, timeout)
    graph_ambiguous_not_acted: float = 0.0  # a 504 / timeout where Graph did not act
    graph_transient: float = 0.0  # 503 or a connection never made: Graph did not act
    graph_429: float = 0.0
    graph_permanent: float = 0.0
    read_lag: float = 0.0  # seconds a directory read may lag behind writes (< ambiguous_delay)
    outages: list[tuple[datetime, datetime]] = field(default_factory=list)
    storage_latency: float = 0.05
    graph_latency: float = 2.0
    graph_timeout: float = 20.0


class Violations:
    """Every broken invariant, with the virtual time and what was seen."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.found: list[str] = []

    def add(self, text: str) -> None:
        self.found.append(f"{self.clock.now.isoformat()} {text}")


class World:
    """What the fakes share: the clock, the scheduler, the seeded generator, the faults and the violations."""

    def __init__(self, clock: VirtualClock, scheduler: Scheduler, rng: Any, faults: Faults) -> None:
        self.clock = clock
        self.scheduler = scheduler
        self.rng = rng
        self.faults = faults
        self.violations = Violations(clock)
        self.current: list[str | None] = [None]  # the sign-up id the running operation works on (for attribution)

    def io(self, label: str, latency: float) -> Point:
        """An await point with a random latency up to ``latency`` seconds."""
        wait = self.rng.random() * latency if latency else 0.0
        return Point(label, self.clock.after(wait))

    def chance(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

    def storage_fault(self, what: str) -> None:
        if self.chance(self.faults.storage_error):
            raise StorageError(f"simulated: {what} failed")


class SimStore:
    """``SignupStore`` with ETags; every write is checked against the declared transitions."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.records: dict[str, Signup] = {}
        self.history: dict[str, list[tuple[datetime, Status | None, Status]]] = {}
        self._etag = 0
        self.writes = 0
        self.revived: dict[str, datetime] = {}  # when a linked or failed request was last given its own turn

    def _land(self, signup: Signup, before: Status | None) -> Signup:
        if before is None and signup.status not in INITIAL:
            self.w.violations.add(f"{signup.id} created as {signup.status.value}")
        if before is not None and (before, signup.status) not in EDGES:
            self.w.violations.add(f"{signup.id} undeclared write {before.value} -> {signup.status.value}")
        self._etag += 1
        self.writes += 1
        stored = dataclasses.replace(signup, etag=f"e{self._etag}", origin=signup.status)
        self.records[signup.id] = stored
        self.history.setdefault(signup.id, []).append((self.w.clock.now, before, signup.status))
        if before in {Status.LINKED, Status.FAILED} and signup.status is Status.RECEIVED:
            self.revived[signup.id] = self.w.clock.now
        if signup.status is Status.FAILED:
            self.w.on_failed(stored)
        return stored

    async def create(self, signup: Signup) -> Signup:
        await self.w.io("store.create", self.w.faults.storage_latency)
        self.w.storage_fault("create")
        if signup.id in self.records:
            raise ConcurrencyConflict("exists")
        stored = self._land(signup, None)
        self.w.scheduler.crash_after("store.create")
        if self.w.chance(self.w.faults.landed_conflict):
            raise ConcurrencyConflict("exists (the SDK retried a create that had landed)")
        return stored

    async def get(self, signup_id: str) -> Signup | None:
        await self.w.io("store.get", self.w.faults.storage_latency)
        self.w.storage_fault("get")
        return self.records.get(signup_id)

    async def replace(self, signup: Signup) -> Signup:
        if signup.etag is None:
            raise ValueError("replace needs an ETag")
        await self.w.io("store.replace", self.w.faults.storage_latency)
        self.w.storage_fault("replace")
        current = self.records.get(signup.id)
        if current is None or current.etag != signup.etag:
            raise ConcurrencyConflict("etag mismatch")
        stored = self._land(signup, current.status)
        self.w.scheduler.crash_after("store.replace")
        if self.w.chance(self.w.faults.landed_conflict):
            raise ConcurrencyConflict("etag mismatch (the SDK retried a replace that had landed)")
        if self.w.chance(self.w.faults.landed_error):
            raise StorageError("simulated: replace landed, answer lost")
        return stored

    async def delete(self, signup_id: str) -> None:
        await self.w.io("store.delete", self.w.faults.storage_latency)
        self.w.storage_fault("delete")
        self.records.pop(signup_id, None)

    async def received_in(self, bucket: str) -> list[Signup]:
        await self.w.io("store.received_in", self.w.faults.storage_latency)
        self.w.storage_fault("received_in")
        return [s for s in self.records.values() if s.id.startswith(bucket) and s.status is Status.RECEIVED]

    async def failed(self, since: datetime | None, until: datetime | None) -> AsyncIterator[Signup]:
        await self.w.io("store.failed", self.w.faults.storage_latency)
        self.w.storage_fault("failed")
        for signup in [s for s in self.records.values() if s.status is Status.FAILED]:
            if (since is None or signup.created_at >= since) and (until is None or signup.created_at < until):
                yield signup

    async def page(self, status: Status | None, size: int, token: str | None) -> tuple[list[Signup], str | None]:
        await self.w.io("store.page", self.w.faults.storage_latency)
        return [s for s in self.records.values() if status is None or s.status is status][:size], None


class SimAddressBook:
    """``AddressBook``: conditional insert and ETag take-over."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.claims: dict[str, AddressClaim] = {}
        self._etag = 0

    def _put(self, key: str, signup_id: str) -> None:
        self._etag += 1
        self.claims[key] = AddressClaim(key, signup_id, f"a{self._etag}")

    async def insert(self, key: str, signup_id: str) -> bool:
        await self.w.io("claims.insert", self.w.faults.storage_latency)
        self.w.storage_fault("claim insert")
        if key in self.claims:
            return False
        self._put(key, signup_id)
        self.w.scheduler.crash_after("claims.insert")
        # With landed_conflict, the SDK's retry met its own entity: 409, reported as "taken".
        return not self.w.chance(self.w.faults.landed_conflict)

    async def get(self, key: str) -> AddressClaim | None:
        await self.w.io("claims.get", self.w.faults.storage_latency)
        self.w.storage_fault("claim read")
        return self.claims.get(key)

    async def take_over(self, claim: AddressClaim, signup_id: str) -> bool:
        await self.w.io("claims.take_over", self.w.faults.storage_latency)
        self.w.storage_fault("claim take-over")
        current = self.claims.get(claim.key)
        if current is None or current.etag != claim.etag:
            return False
        self._put(claim.key, signup_id)
        self.w.scheduler.crash_after("claims.take_over")
        return not self.w.chance(self.w.faults.landed_conflict)  # landed, maybe reported 412


class SimDueIndex:
    """``DueIndex``: minute -> {id: nudges}, and the cursor with an ETag."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.minutes: dict[str, dict[str, int]] = {}
        self.bucket: str | None = None
        self._etag = 0

    async def add(self, entry: DueEntry) -> None:
        await self.w.io("index.add", self.w.faults.storage_latency)
        self.w.storage_fault("index add")
        self.minutes.setdefault(entry.bucket, {})[entry.signup_id] = entry.nudges
        self.w.scheduler.crash_after("index.add")
        if self.w.chance(self.w.faults.landed_error):
            raise StorageError("simulated: index add landed, answer lost")

    async def page(self, bucket: str, limit: int) -> list[DueEntry]:
        await self.w.io("index.page", self.w.faults.storage_latency)
        self.w.storage_fault("index page")
        return [DueEntry(bucket, sid, n) for sid, n in list(self.minutes.get(bucket, {}).items())[:limit]]

    async def remove(self, entries: list[DueEntry]) -> None:
        await self.w.io("index.remove", self.w.faults.storage_latency)
        self.w.storage_fault("index remove")
        for entry in entries:
            self.minutes.get(entry.bucket, {}).pop(entry.signup_id, None)

    async def cursor(self) -> tuple[str | None, str | None]:
        await self.w.io("index.cursor", self.w.faults.storage_latency)
        self.w.storage_fault("cursor read")
        return self.bucket, (str(self._etag) if self.bucket else None)

    async def advance(self, bucket: str, etag: str | None) -> str | None:
        await self.w.io("index.advance", self.w.faults.storage_latency)
        self.w.storage_fault("cursor write")
        if (str(self._etag) if self.bucket else None) != etag:
            return None
        self.bucket, self._etag = bucket, self._etag + 1
        return str(self._etag)


@dataclass
class Message:
    """A queue message: visible from ``visible_at``; ``dequeues`` counts receives, as Azure's queue does."""

    seq: int
    signup_id: str
    visible_at: datetime
    dequeues: int = 0


class SimQueue:
    """The work queue: visibility delays, lost and duplicate messages, and a poison queue."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.messages: list[Message] = []
        self.poison: list[Message] = []
        self._seq = 0

    def put(self, signup_id: str, delay: float) -> None:
        self._seq += 1
        self.messages.append(Message(self._seq, signup_id, self.w.clock.after(max(0.0, delay))))

    async def enqueue(self, signup_id: str, delay: float = 0.0) -> None:
        await self.w.io("queue.enqueue", self.w.faults.storage_latency)
        self.w.storage_fault("enqueue")
        if self.w.chance(self.w.faults.queue_lost):
            return
        self.put(signup_id, delay)
        if self.w.chance(self.w.faults.queue_duplicate):
            self.put(signup_id, delay + self.w.rng.random() * 5)
        self.w.scheduler.crash_after("queue.enqueue")

    def visible(self) -> list[Message]:
        now = self.w.clock.now
        return [m for m in self.messages if m.visible_at <= now]

    def next_visible(self) -> datetime | None:
        return min((m.visible_at for m in self.messages), default=None)


@dataclass
class Acted:
    """One invitation Graph acted on."""

    at: datetime
    email: str
    signup_id: str | None
    mailed: bool


class SimDirectory:
    """``Directory`` with act-then-lose, 429s, outages, lagging reads; counts mails per address."""

    def __init__(self, world: World, domains: frozenset[str]) -> None:
        self.w = world
        self.users: dict[str, tuple[DirectoryUser, datetime, str | None]] = {}  # mail -> (user, created, creator)
        self.domains = domains
        self.acted: list[Acted] = []
        self.org_mails: list[tuple[datetime, str, str | None]] = []
        self.approver_mails: list[tuple[datetime, str | None]] = []
        self.check_claim: Callable[[str, str], Awaitable[bool]] | None = None
        self.claim_of: Callable[[str, str], str | None] | None = None
        self.invites = 0

    def add_user(self, mail: str, user_type: str, state: str | None, creator: str | None = None) -> DirectoryUser:
        user = DirectoryUser(f"user-{len(self.users) + 1}", user_type, mail, mail, None, state)
        self.users[mail.casefold()] = (
            user,
            self.w.clock.now - timedelta(days=1) if creator is None else self.w.clock.now,
            creator,
        )
        return user

    def _dark(self) -> bool:
        now = self.w.clock.now
        return any(start <= now < end for start, end in self.w.faults.outages)

    async def _call(self, label: str) -> None:
        await self.w.io(label, self.w.faults.graph_latency)

    def _read_fault(self) -> None:
        if self._dark() or self.w.chance(self.w.faults.graph_transient):
            raise TransientGraphError("simulated: unavailable", code="serviceNotAvailable", status=503)
        if self.w.chance(self.w.faults.graph_429):
            retry = None if self.w.rng.random() < 0.5 else 1 + self.w.rng.random() * 30
            raise TransientGraphError("simulated: throttled", code="TooManyRequests", status=429, retry_after=retry)

    async def _write_outcome(self, label: str, fence: Callable[[], Awaitable[None]] | None) -> str:
        """Waits (the pacer, 429 pauses) and the fence, as the real client does; then what the POST does.

        Returns "act", "act-lost", or raises what Graph answered when it did not act.
        """
        throttled = 0.0
        while True:
            await self._call(label)
            if fence is not None:
                await fence()
            if self._dark():
                if self.w.rng.random() < 0.5:
                    raise TransientGraphError("simulated: connection refused", code="ConnectError")
                await Point(label + ".timeout", self.w.clock.after(self.w.faults.graph_timeout))
                raise AmbiguousGraphError("simulated: timeout, not acted", code="Timeout")
            if self.w.chance(self.w.faults.graph_429):
                retry = None if self.w.rng.random() < 0.5 else 1 + self.w.rng.random() * 30
                pause = retry if retry is not None else 5.0
                if throttled + pause <= 30.0 and self.w.rng.random() < 0.5:
                    throttled += pause  # the client's own pause, then the fence again
                    await Point(label + ".429-pause", self.w.clock.after(pause))
                    continue
                raise TransientGraphError("simulated: throttled", code="TooManyRequests", status=429, retry_after=retry)
            if self.w.chance(self.w.faults.graph_transient):
                raise TransientGraphError("simulated: unavailable", code="serviceNotAvailable", status=503)
            if self.w.chance(self.w.faults.graph_ambiguous_not_acted):
                await Point(label + ".timeout", self.w.clock.after(self.w.faults.graph_timeout * self.w.rng.random()))
                raise AmbiguousGraphError("simulated: 504, not acted", code="GatewayTimeout", status=504)
            if self.w.chance(self.w.faults.graph_permanent):
                raise PermanentGraphError("simulated: refused", code="BadRequest", status=400)
            if self.w.chance(self.w.faults.graph_lost):
                return "act-lost"
            return "act"

    async def invite(
        self, invitation: Invitation, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> InvitationResult:
        outcome = await self._write_outcome("graph.invite", fence)
        signup_id = self.w.current[0]
        email = invitation.email
        if self.check_claim is not None and signup_id is not None and self.claim_of is not None:
            owner = self.claim_of(email, signup_id)
            if owner != signup_id:
                self.w.violations.add(f"{signup_id} POSTed an invitation without holding the claim (owner {owner})")
        self.invites += 1
        found = self.users.get(email.casefold())
        if found is None:
            user = self.add_user(email, "Guest", "PendingAcceptance", creator=signup_id or "?")
        else:
            user = found[0]
            if user.user_type == "Member" and user.external_user_state is None:
                # Converting an internal user: it becomes an external one (B2B conversion).
                user = dataclasses.replace(user, external_user_state="PendingAcceptance")
                self.users[email.casefold()] = (user, found[1], found[2])
        mailed = invitation.options.send_message
        self.acted.append(Acted(self.w.clock.now, email.casefold(), signup_id, mailed))
        self.w.on_invited(email.casefold(), signup_id, mailed)
        self.w.scheduler.crash_after("graph.invite")
        if outcome == "act-lost":
            if self.w.rng.random() < 0.5:
                await Point("graph.invite.lost", self.w.clock.after(self.w.faults.graph_timeout * self.w.rng.random()))
            raise AmbiguousGraphError("simulated: acted, answer lost", code="GatewayTimeout", status=504)
        n = self.invites
        return InvitationResult(f"inv-{n}", user.id, "PendingAcceptance", f"https://login.example/redeem/{n}", f"r{n}")

    async def find_users_by_email(self, email: str) -> list[DirectoryUser]:
        await self._call("graph.find_users")
        self._read_fault()
        found = self.users.get(email.casefold())
        if found is None:
            return []
        user, created, creator = found
        if creator is not None and self.w.clock.now - created < timedelta(seconds=self.w.faults.read_lag):
            return []  # not replicated yet
        return [user]

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        await self._call("graph.get_user")
        self._read_fault()
        return next((u for u, _, _ in self.users.values() if user_id in (u.id, u.user_principal_name)), None)

    async def set_user_type(self, user_id: str, user_type: str, *, priority: str = "normal") -> None:
        await self._call("graph.set_user_type")
        self._read_fault()
        for key, (user, created, creator) in list(self.users.items()):
            if user.id == user_id:
                self.users[key] = (dataclasses.replace(user, user_type=user_type), created, creator)

    async def add_group_member(self, group_id: str, user_id: str) -> None:
        await self._write_outcome("graph.add_group_member", None)

    async def send_mail(self, sender: str, message: MailMessage) -> None:
        outcome = await self._write_outcome("graph.send_mail", None)
        signup_id = self.w.current[0]
        if message.to and "approver" in message.to[0]:
            self.approver_mails.append((self.w.clock.now, signup_id))
            self.w.on_approver_mail(signup_id)
        else:
            for to in message.to:
                self.org_mails.append((self.w.clock.now, to.casefold(), signup_id))
                self.w.on_org_mail(to.casefold(), signup_id)
        self.w.scheduler.crash_after("graph.send_mail")
        if outcome == "act-lost":
            raise AmbiguousGraphError("simulated: mail sent, answer lost", code="GatewayTimeout", status=504)

    async def verified_domains(self) -> frozenset[str]:
        await self._call("graph.domains")
        self._read_fault()
        return self.domains


class SimAudit:
    """``AuditLog`` that may fail like storage (the real one retries; a failure reaches the caller)."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.rows: list[Any] = []

    async def append(self, entry: Any) -> None:
        await self.w.io("audit.append", self.w.faults.storage_latency)
        self.w.storage_fault("audit")
        self.rows.append(entry)

    async def history(self, signup_id: str) -> list[Any]:
        return [r for r in self.rows if r.signup_id == signup_id]


class SimDenials:
    """``DenialMemory`` over the simulated storage."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.until: dict[str, tuple[datetime, str]] = {}

    async def remember(self, email: str, signup_id: str, until: datetime) -> None:
        await self.w.io("denials.remember", self.w.faults.storage_latency)
        self.w.storage_fault("denial write")
        self.until[email.casefold()] = (until, signup_id)

    async def denied_until(self, email: str) -> tuple[datetime, str] | None:
        await self.w.io("denials.read", self.w.faults.storage_latency)
        self.w.storage_fault("denial read")
        return self.until.get(email.casefold())


def claim_key(email: str) -> str:
    return address_key(email)
