"""The guest lifecycle's rules on the simulated world: the real ``GuestSweep``/``GuestActions``/``Digests``.

``simulate_guests(seed)`` registers a few guests under seeded rules (reminders and expiry, reviews with
block-and-delete), adds guests the portal never made, and runs two or three sweeping processes on a
virtual clock, with the seed's storage faults, lost Graph answers, writes refused before acting, and
crashes at any await point (``core.Scheduler``). A "day" of the rules is ten virtual minutes. A reviewer
answers some reviews (keep or remove) through ``GuestAdmin``. Invariants:

* at most one mail per reminder step per guest (never more reminders than the rules' days), and at most
  one digest per reviewer per day;
* at most one acted block and one acted deletion per guest (nothing is restored here), and no acted write
  or mail for a guest the register does not hold;
* no exception but ``StorageError`` (and the injected ``Crash``) escapes a sweep.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import AmbiguousGraphError, ConcurrencyConflict, StorageError, TransientGraphError
from shared.graph.directory import DeletedUser, DirectoryUser, GuestAccount, MailMessage, Membership
from shared.guests import Digests, GuestActions, GuestAdmin, GuestDue, GuestRecord, GuestState, GuestSweep
from shared.guests.register import index_day
from shared.policy import FixedPolicy, parse_policy

from .core import Crash, Op, Scheduler, VirtualClock
from .world import Faults, SimAudit, World

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
DAY = timedelta(minutes=10)
LEASE = 90.0
SWEEP_PERIOD = 45.0
HORIZON = timedelta(hours=5)
REVIEWER = "boss@contoso.com"


@dataclass
class Seen:
    """What Graph did (acted), per guest, for the checks."""

    reminders: dict[str, int] = field(default_factory=dict)
    blocks: dict[str, int] = field(default_factory=dict)
    deletes: dict[str, int] = field(default_factory=dict)
    digests: dict[tuple[str, int], int] = field(default_factory=dict)
    touched_strangers: list[str] = field(default_factory=list)


class SimGuestStore:
    """The register (and its indexes) in memory, with ETags, storage faults and writes that land then fail."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.records: dict[str, GuestRecord] = {}
        self.days: dict[str, set[str]] = {}
        self.states: dict[GuestState, set[str]] = {}
        self.sweep_cursor: tuple[str, str] | None = None
        self.n = 0

    async def _io(self, label: str, write: bool = False) -> None:
        await self.w.io(label, self.w.faults.storage_latency)
        self.w.storage_fault(label)

    def _landed(self, label: str) -> None:
        self.w.scheduler.crash_after(label)
        if self.w.chance(self.w.faults.landed_error):
            raise StorageError(f"simulated: {label} landed, then failed")

    def _stamp(self, record: GuestRecord) -> GuestRecord:
        self.n += 1
        stamped = record.evolve(etag=str(self.n))
        self.records[record.user_id] = stamped
        return stamped

    async def insert(self, record: GuestRecord) -> GuestRecord | None:
        return None if record.user_id in self.records else self._stamp(record)

    async def get(self, user_id: str) -> GuestRecord | None:
        await self._io("register.get")
        return self.records.get(user_id)

    async def replace(self, record: GuestRecord) -> GuestRecord:
        await self._io("register.replace")
        current = self.records.get(record.user_id)
        if current is None or current.etag != record.etag:
            raise ConcurrencyConflict("simulated: changed")
        stored = self._stamp(record)
        self._landed("register.replace")
        if self.w.chance(self.w.faults.landed_conflict):
            raise ConcurrencyConflict("simulated: landed, reported 412")
        return stored

    async def page(self, size: int, token: str | None) -> tuple[list[GuestRecord], str | None]:
        return list(self.records.values()), None

    async def schedule(self, entry: GuestDue) -> None:
        await self._io("register.schedule")
        self.days.setdefault(entry.day, set()).add(entry.user_id)

    async def due(self, day: str, limit: int) -> list[GuestDue]:
        return [GuestDue(day, u) for u in sorted(self.days.get(day, ()))[:limit]]

    async def due_page(self, day: str, size: int, token: str | None) -> tuple[list[GuestDue], str | None]:
        await self._io("register.due_page")
        ordered = sorted(self.days.get(day, ()))
        start = int(token or 0)
        more = start + size < len(ordered)
        return [GuestDue(day, u) for u in ordered[start : start + size]], (str(start + size) if more else None)

    async def unschedule(self, entries: list[GuestDue]) -> None:
        await self._io("register.unschedule")
        for entry in entries:
            self.days.get(entry.day, set()).discard(entry.user_id)

    async def index_state(self, user_id: str, state: GuestState) -> None:
        await self._io("register.index_state")
        self.states.setdefault(state, set()).add(user_id)

    async def unindex_state(self, user_id: str, state: GuestState) -> None:
        await self._io("register.unindex_state")
        self.states.get(state, set()).discard(user_id)

    async def in_state(self, state: GuestState, size: int, token: str | None) -> tuple[list[str], str | None]:
        await self._io("register.in_state")
        return sorted(self.states.get(state, ()))[:size], None

    async def cursor(self) -> tuple[str | None, str | None]:
        await self._io("register.cursor")
        return self.sweep_cursor if self.sweep_cursor is not None else (None, None)

    async def advance(self, day: str, etag: str | None) -> str | None:
        await self._io("register.advance")
        current = self.sweep_cursor[1] if self.sweep_cursor is not None else None
        if etag != current:
            return None
        self.n += 1
        self.sweep_cursor = (day, str(self.n))
        return self.sweep_cursor[1]


class Entity(dict[str, Any]):
    """A table entity with the SDK's ``metadata``."""

    metadata: dict[str, Any]


class SimTable:
    """What ``Digests`` asks of ``shared.storage.Table``, in memory, with faults."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self.n = 0

    async def _io(self, label: str) -> None:
        await self.w.io(label, self.w.faults.storage_latency)
        self.w.storage_fault(label)

    def _put(self, entity: dict[str, Any]) -> str:
        self.n += 1
        self.rows[(entity["PartitionKey"], entity["RowKey"])] = (dict(entity), str(self.n))
        return str(self.n)

    async def insert(self, entity: dict[str, Any]) -> str | None:
        await self._io("digest.insert")
        if (entity["PartitionKey"], entity["RowKey"]) in self.rows:
            return None
        etag = self._put(entity)
        self.w.scheduler.crash_after("digest.insert")
        return etag

    async def read(self, partition: str, row: str, *, create: bool = True) -> Any | None:
        await self._io("digest.read")
        found = self.rows.get((partition, row))
        if found is None:
            return None
        entity = Entity(found[0])
        entity.metadata = {"etag": found[1]}
        return entity

    async def replace(self, entity: dict[str, Any], etag: str) -> str | None:
        await self._io("digest.replace")
        found = self.rows.get((entity["PartitionKey"], entity["RowKey"]))
        if found is None or found[1] != etag:
            return None
        return self._put(entity)

    async def upsert(self, entity: dict[str, Any]) -> None:
        await self._io("digest.upsert")
        self._put(entity)

    async def delete(self, partition: str, row: str) -> None:
        await self._io("digest.delete")
        self.rows.pop((partition, row), None)

    async def delete_many(self, partition: str, rows: list[str]) -> None:
        for row in rows:
            await self.delete(partition, row)

    async def partition(self, partition: str, limit: int, *, after: str | None = None) -> list[Any]:
        await self._io("digest.partition")
        rows = sorted(self.rows.items())
        return [dict(e) for (pk, rk), (e, _) in rows if pk == partition and (after is None or rk > after)][:limit]


class SimGuestDirectory:
    """Graph for the guest lifecycle: accounts, deletions and mail, with lost answers and refusals."""

    def __init__(self, world: World, seen: Seen, registered: Callable[[str], bool]) -> None:
        self.w = world
        self.seen = seen
        self.registered = registered
        self.accounts: dict[str, GuestAccount] = {}
        self.deleted: set[str] = set()

    async def _write(self, label: str) -> str:
        await self.w.io(label, self.w.faults.graph_latency)
        if self.w.chance(self.w.faults.graph_transient):
            raise TransientGraphError("simulated: refused", code="serviceNotAvailable", status=503)
        if self.w.chance(self.w.faults.graph_ambiguous_not_acted):
            raise AmbiguousGraphError("simulated: timeout, not acted", code="Timeout")
        return "act-lost" if self.w.chance(self.w.faults.graph_lost) else "act"

    def _after(self, label: str, outcome: str) -> None:
        self.w.scheduler.crash_after(label)
        if outcome == "act-lost":
            raise AmbiguousGraphError("simulated: acted, answer lost", code="GatewayTimeout", status=504)

    def _mark(self, user_id: str) -> None:
        if not self.registered(user_id):
            self.seen.touched_strangers.append(user_id)

    async def _read(self, label: str) -> None:
        await self.w.io(label, self.w.faults.graph_latency)
        if self.w.chance(self.w.faults.graph_transient):
            raise TransientGraphError("simulated: unavailable", code="serviceNotAvailable", status=503)

    async def get_guest(self, user_id: str, *, sign_in_activity: bool = False) -> GuestAccount | None:
        await self._read("graph.get_guest")
        return None if user_id in self.deleted else self.accounts.get(user_id)

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        await self._read("graph.get_user")
        return None

    async def set_sign_in_enabled(self, user_id: str, enabled: bool, *, priority: str = "low") -> None:
        outcome = await self._write("graph.disable")
        self._mark(user_id)
        account = self.accounts[user_id]
        if not enabled:
            self.seen.blocks[user_id] = self.seen.blocks.get(user_id, 0) + 1
        self.accounts[user_id] = GuestAccount(
            account.id, None, account.created, "Invitation", account.external_user_state, None, enabled
        )
        self._after("graph.disable", outcome)

    async def delete_user(self, user_id: str, *, priority: str = "low") -> bool:
        outcome = await self._write("graph.delete")
        self._mark(user_id)
        if user_id in self.deleted:
            return False
        self.deleted.add(user_id)
        self.seen.deletes[user_id] = self.seen.deletes.get(user_id, 0) + 1
        self._after("graph.delete", outcome)
        return True

    async def remove_group_member(self, group_id: str, user_id: str, *, priority: str = "low") -> bool:
        raise AssertionError("the simulated rules never remove groups")

    async def member_of(self, user_id: str) -> list[Membership]:
        await self._read("graph.member_of")
        return []

    async def get_deleted_user(self, user_id: str) -> DeletedUser | None:
        await self._read("graph.get_deleted")
        return DeletedUser(user_id, START) if user_id in self.deleted else None

    async def send_mail(self, sender: str, message: MailMessage) -> None:
        outcome = await self._write("graph.send_mail")
        if message.subject.startswith("Guest access review"):
            key = (message.to[0], int(self.w.clock.now.timestamp() // DAY.total_seconds()))
            self.seen.digests[key] = self.seen.digests.get(key, 0) + 1
        else:
            user_id = message.to[0].split("@")[0]
            self._mark(user_id)
            self.seen.reminders[user_id] = self.seen.reminders.get(user_id, 0) + 1
        self._after("graph.send_mail", outcome)


@dataclass
class SignupView:
    """What a reminder needs of the sign-up (the address is the user id, so mails are attributable)."""

    email: str
    redeem_url: str
    language: str | None = None
    display_name: str = "Guest"
    policy_profile: str | None = None


class SimSignups:
    def __init__(self, world: World, views: dict[str, SignupView]) -> None:
        self.w = world
        self.views = views

    async def get(self, signup_id: str) -> Any:
        await self.w.io("signups.get", self.w.faults.storage_latency)
        self.w.storage_fault("signups.get")
        return self.views.get(signup_id)


POLICY = parse_policy(
    {
        "profiles": [
            {
                "name": "unredeemed",
                "domains": ["fabrikam.com"],
                "action": "approve",
                "groups": [],
                "approvers": [REVIEWER],
                "lifecycle": {"unredeemedReminderDays": [2, 4], "unredeemedExpiryDays": 6},
            },
            {
                "name": "reviewed",
                "domains": ["tailspin.com"],
                "action": "approve",
                "groups": [],
                "approvers": [REVIEWER],
                "lifecycle": {
                    "reviewEveryDays": 5,
                    "reviewGraceDays": 2,
                    "onNoAnswer": "blockSignInAndDelete",
                    "onRemove": "blockSignIn",
                    "deleteAfterDays": 3,
                },
            },
        ]
    }
)


def faults_for(rng: random.Random) -> Faults:
    def maybe(p_on: float, high: float) -> float:
        return rng.uniform(0, high) if rng.random() < p_on else 0.0

    return Faults(
        storage_error=maybe(0.5, 0.08),
        landed_conflict=maybe(0.3, 0.04),
        landed_error=maybe(0.3, 0.04),
        graph_lost=maybe(0.6, 0.2),
        graph_ambiguous_not_acted=maybe(0.4, 0.1),
        graph_transient=maybe(0.5, 0.15),
        graph_latency=2.0,
    )


def simulate_guests(seed: int) -> list[str]:
    """Run one seed; the violations (empty when every invariant held)."""
    rng = random.Random(seed)
    clock = VirtualClock(START)
    scheduler = Scheduler(clock, rng, crash_rate=rng.choice([0.0, 0.01, 0.03]))
    world = World(clock, scheduler, rng, faults_for(rng))
    seen = Seen()
    register = SimGuestStore(world)
    directory = SimGuestDirectory(world, seen, lambda uid: uid in register.records)
    views: dict[str, SignupView] = {}
    policy = FixedPolicy(POLICY)
    digests = Digests(
        SimTable(world),  # type: ignore[arg-type]
        directory,  # type: ignore[arg-type]
        sender="portal@contoso.com",
        reviews_url="https://portal/api/manage",
        lease=LEASE,
        day=DAY,
    )
    actions = GuestActions(
        register,
        directory,  # type: ignore[arg-type]
        SimSignups(world, views),  # type: ignore[arg-type]
        SimAudit(world),
        digests,
        policy,
        sender="portal@contoso.com",
        organisation="Contoso",
        contact="help@contoso.com",
        lease=LEASE,
        day=DAY,
        clock=clock,
    )
    sweep = GuestSweep(register, actions, digests, policy, page=rng.choice([2, 5, 100]), concurrency=1, clock=clock)
    admin = GuestAdmin(actions, directory, policy)  # type: ignore[arg-type]
    for n in range(rng.randint(2, 6)):
        profile = rng.choice(["unredeemed", "reviewed"])
        uid = f"g{n}"
        state = "PendingAcceptance" if profile == "unredeemed" and rng.random() < 0.8 else "Accepted"
        directory.accounts[uid] = GuestAccount(uid, None, START, "Invitation", state, None, True)
        invited = START - timedelta(seconds=rng.uniform(0, DAY.total_seconds()))
        record = GuestRecord(uid, f"s{n}", profile, invited, approvers=(REVIEWER,), updated_at=START)
        due = invited + (2 * DAY if profile == "unredeemed" else 5 * DAY)
        register.records[uid] = record.evolve(due_at=due, etag="0")
        register.days.setdefault(index_day(due, START), set()).add(uid)
        views[f"s{n}"] = SignupView(f"{uid}@fabrikam.com", f"https://login.example/redeem/{uid}")
    for n in range(rng.randint(1, 3)):  # guests the portal never made
        directory.accounts[f"x{n}"] = GuestAccount(f"x{n}", None, START, "Invitation", "PendingAcceptance", None, True)

    violations: list[str] = []
    busy: dict[str, datetime | None] = {}

    def start(process: str, name: str, coro: Any) -> None:
        busy[process] = None

        async def run() -> Any:
            return await coro

        def done(_: Any) -> None:
            busy[process] = clock.now

        def failed(exc: BaseException) -> None:
            busy[process] = clock.after(rng.uniform(1, 60)) if isinstance(exc, Crash) else clock.now
            if not isinstance(exc, (Crash, StorageError)):
                violations.append(f"{clock.now.isoformat()} {name} raised {type(exc).__name__}: {exc}")

        scheduler.start(Op(process, name, run(), done, failed, clock.now))

    async def answer() -> None:
        pending, _ = await register.in_state(GuestState.REVIEW_PENDING, 50, None)
        if pending:
            await admin.decide([rng.choice(pending)], rng.choice(["keep", "remove"]), REVIEWER, None)

    sweepers = [f"sweeper-{i}" for i in range(rng.randint(1, 3))]
    next_sweep, next_answer = START, START + timedelta(seconds=rng.uniform(60, 900))
    logging.disable(logging.CRITICAL)
    try:
        while scheduler.steps < 30000 and clock.now < START + HORIZON:
            choices: list[Callable[[], Any]] = [lambda op=op: scheduler.resume(op) for op in scheduler.ready()]
            if next_sweep <= clock.now:
                for process in sweepers:
                    state = busy.get(process, START)
                    if state is not None and state <= clock.now:
                        choices.append(lambda p=process: start(p, "sweep", sweep.sweep()))
                        break
                next_sweep += timedelta(seconds=SWEEP_PERIOD)
            if next_answer <= clock.now:
                if busy.get("reviewer", START) is not None:
                    choices.append(lambda: start("reviewer", "decide", answer()))
                next_answer += timedelta(seconds=rng.uniform(120, 1200))
            if choices:
                rng.choice(choices)()
                continue
            wakes = [next_sweep, next_answer, *(op.wake for op in scheduler.ops)]
            wakes += [t for t in busy.values() if t is not None and t > clock.now]
            clock.now = min(t for t in wakes if t > clock.now)
    finally:
        logging.disable(logging.NOTSET)
    for uid, count in seen.reminders.items():
        if count > 2:
            violations.append(f"{uid} got {count} reminders (the rules have 2)")
    for uid, count in seen.blocks.items():
        if count > 1:
            violations.append(f"{uid} blocked {count} times")
    for uid, count in seen.deletes.items():
        if count > 1:
            violations.append(f"{uid} deleted {count} times")
    for (reviewer, day), count in seen.digests.items():
        if count > 1:
            violations.append(f"{count} digests to {reviewer} on day {day}")
    if seen.touched_strangers:
        violations.append(f"guests the portal never made were touched: {sorted(set(seen.touched_strangers))}")
    for uid in directory.accounts:
        if uid.startswith("x") and (directory.accounts[uid].account_enabled is False or uid in directory.deleted):
            violations.append(f"{uid} (not registered) was blocked or deleted")
    return violations


def run_guest_seeds(seeds: range) -> list[tuple[int, list[str]]]:
    """The seeds whose runs broke an invariant, with what broke."""
    return [(seed, found) for seed in seeds if (found := simulate_guests(seed))]
