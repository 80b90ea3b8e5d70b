"""One simulated run: the real lifecycle on the simulated world, driven by a seed, checked as it goes.

``simulate(seed)`` builds a world whose size and fault mix come from the seed
(a few addresses, a few workers, one or two sweepers, repeat sign-ups,
approvals, denials, replays and conversions at seeded moments), runs the real
``Intake``, ``InvitationWorker``, ``Sweeper``, ``Approvals``, ``Replayer``,
``FollowUps`` and ``ConversionRequests`` until everything has settled, and
returns what it saw. Invariants (``Checks``):

* every accepted request is final by its deadline plus a sweep period, or, in
  doubt, by its deadline plus the doubt cap (``unknown``); a linked request
  whose owner ended without inviting gets its own turn;
* at most one Microsoft mail and one organisation mail per address per repeat
  window (and at most one of each per request, and one approvers' mail);
* never ``failed`` while the directory holds a guest this request's POST made;
* no accepted record lost; no POST without the address's claim;
* every status write is a declared edge (``transitions.EDGES``, as the store
  sees it), and no ``IllegalTransition`` is raised anywhere.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.access import Caller
from shared.admin.replay import Replayer, Selection
from shared.conversion.converter import ConversionOptions
from shared.conversion.requests import ConversionRequests
from shared.errors import IllegalTransition, PortalError, StorageError
from shared.lifecycle import intake as intake_module
from shared.lifecycle.admission import Admission
from shared.lifecycle.models import DIRECTORY_FACT_CODES, Signup, Status
from shared.lifecycle.store import bucket_of
from shared.lifecycle.timers import Timers
from shared.lifecycle.validation import SignupForm
from shared.policy import Action, Policy
from shared.policy.document import MailTemplate, Profile

from ..wiring import Parts, wire
from .core import Crash, Op, Scheduler, VirtualClock
from .world import (
    Faults,
    SimAddressBook,
    SimAudit,
    SimDenials,
    SimDirectory,
    SimDueIndex,
    SimQueue,
    SimStore,
    World,
)

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
TIMERS = Timers(
    retry_initial=10,
    retry_max=120,
    deadline=600,
    repeat_window=1200,
    queued_grace=120,
    lease=60,
    ambiguous_delay=30,
    doubt_cap=900,
    pending_expiry=900,
)
SWEEP_PERIOD = 60.0
# The sweeper reads whole minutes that passed 30 s (its clock-skew allowance) ago: a deadline's minute is read
# up to two minutes and a period after it; storage faults nudge an entry once more.
SLACK = timedelta(seconds=SWEEP_PERIOD + 180)
LATE = timedelta(hours=1)  # the bound when storage faults or crashes may hold the sweeper back
VISIBILITY = 10.0  # host.json's visibilityTimeout: a failed delivery is visible again after this
MAX_DEQUEUE = 5
APPROVER = Caller("principal", "approver@contoso.com")
TEMPLATE = MailTemplate(subject={"en": "Welcome {displayName}"}, html={"en": "<a href='{redeemUrl}'>join</a>"})
POLICY = Policy(
    default_action=Action.APPROVE,
    profiles=(
        Profile("partners", ("fabrikam.com",), Action.APPROVE, ("group-1",), mail_template=TEMPLATE),
        Profile("reviewed", ("litware.com",), Action.REVIEW, (), approvers=("approver@contoso.com",)),
    ),
)
# Each address's fate is set by its domain: plain invite (Microsoft's mail), profile with org mail and a group,
# review, the tenant's own domain (refused), an existing member (refused), and a convertible internal user.
ADDRESSES = (
    "ann@adatum.com",
    "bob@fabrikam.com",
    "cat@litware.com",
    "dan@adatum.com",
    "eve@litware.com",
    "fay@contoso.com",
    "gus@northwind.com",
    "hal@tailspin.com",
)
MEMBER = "gus@northwind.com"  # already a member of the tenant
CONVERTIBLE = "hal@tailspin.com"  # an internal user, converted by an admin (or signing up as a guest)


@dataclass
class Result:
    """What one run did and found."""

    seed: int
    violations: list[str]
    steps: int
    crash_sites: dict[str, int]
    accepted: int
    finals: dict[str, int]
    trace: list[str] = field(default_factory=list)
    end: datetime = START


class Checks:
    """The invariants; the fakes report mails, invitations and failures as they happen."""

    def __init__(self, world: World, store: SimStore, claims: SimAddressBook, directory: SimDirectory) -> None:
        self.w = world
        self.store = store
        self.claims = claims
        self.directory = directory
        self.accepted: dict[str, datetime] = {}
        # The timed bound holds only while the sweeper can work: with storage faults or crashes, a sweep may fail
        # and an entry be set aside for a doubling grace, so those seeds get the end-of-run bound (``LATE``).
        self.strict = True
        self.late: set[str] = set()
        self.ms_mails: dict[str, list[tuple[datetime, str | None]]] = {}
        self.org_mails: dict[str, list[tuple[datetime, str | None]]] = {}
        self.approver_mails: dict[str | None, int] = {}

    def bad(self, text: str) -> None:
        self.w.violations.add(text)

    def on_invited(self, email: str, signup_id: str | None, mailed: bool) -> None:
        record = self.store.records.get(signup_id or "")
        if record is None:
            self.bad(f"POST for an unknown request {signup_id}")
            return
        claim = self.claims.claims.get(Admission.claim_key(record))
        if claim is None or claim.signup_id != record.id:
            self.bad(f"{record.id} POSTed without its address claim (claim: {claim.signup_id if claim else None})")
        if record.status is Status.FAILED:
            self.bad(f"{record.id} POSTed while failed")
        if mailed:
            self._once_per_window("Microsoft mail", self.ms_mails, email, signup_id)

    def on_org_mail(self, email: str, signup_id: str | None) -> None:
        self._once_per_window("organisation mail", self.org_mails, email, signup_id)

    def on_approver_mail(self, signup_id: str | None) -> None:
        self.approver_mails[signup_id] = self.approver_mails.get(signup_id, 0) + 1
        if self.approver_mails[signup_id] > 1:
            self.bad(f"{signup_id}: a second approvers' mail")

    def _once_per_window(
        self, what: str, seen: dict[str, list[tuple[datetime, str | None]]], email: str, signup_id: str | None
    ) -> None:
        now = self.w.clock.now
        window = timedelta(seconds=TIMERS.repeat_window)
        earlier = seen.setdefault(email, [])
        for at, sid in earlier:
            if sid == signup_id:
                self.bad(f"{signup_id}: a second {what} (first at {at.time()})")
            elif what == "Microsoft mail" and now - at < window:
                self.bad(f"{email.split('@')[1]}: {what} by {signup_id} {now - at} after one by {sid}")
            elif what != "Microsoft mail":
                first, this = self.store.records.get(sid or ""), self.store.records.get(signup_id or "")
                # Two invitations' mails: their invitations' distance. A member's "you already have an account"
                # mail (no invitation): the mails' own distance.
                gap = (
                    this.invited_at - first.invited_at
                    if first and this and first.invited_at and this.invited_at
                    else now - at
                    if first and this and not first.invited_at and not this.invited_at
                    else timedelta(0)
                )
                if gap < window:
                    self.bad(f"{email.split('@')[1]}: {what} by {signup_id}; one by {sid}, invitations {gap} apart")
        earlier.append((now, signup_id))

    def on_failed(self, record: Signup) -> None:
        found = self.directory.users.get(record.email.casefold())
        if found is not None and found[2] == record.id:
            self.bad(f"{record.id} written failed ({record.error_code}) while the directory holds the guest it made")

    def deadlines(self, final_check: bool = False) -> None:
        """Every accepted request final by its deadline plus a sweep period (in doubt: plus the doubt cap)."""
        now = self.w.clock.now
        for sid in self.accepted:
            record = self.store.records.get(sid)
            if record is None:
                self.bad(f"{sid}: accepted record lost")
                continue
            if record.status.terminal:
                continue
            # A revived request has its own turn from its revival (a review's expiry may have passed meanwhile).
            revived = self.store.revived.get(sid)
            start = max(record.deadline, revived + timedelta(seconds=TIMERS.queued_grace)) if revived else None
            limit = (start or record.deadline) + (SLACK if self.strict else LATE)
            if record.maybe_invited:
                limit += timedelta(seconds=TIMERS.doubt_cap)
            if (now > limit or final_check) and sid not in self.late:
                self.late.add(sid)
                self.bad(
                    f"{sid}: still {record.status.value} (maybe_invited={record.maybe_invited}), "
                    f"deadline {record.deadline.time()}"
                )

    def linked(self) -> None:
        """At the end: a linked request follows an owner that invited (or is in doubt, or the address is a fact)."""
        for sid in self.accepted:
            record = self.store.records.get(sid)
            if record is None or record.status is not Status.LINKED:
                continue
            owner = self.store.records.get(record.linked_to or "")
            settled = owner is not None and (
                owner.status in {Status.INVITED, Status.UNKNOWN}
                or (owner.status is Status.FAILED and owner.error_code in DIRECTORY_FACT_CODES)
                or owner.status is Status.LINKED
            )
            if not settled:
                state = owner.status.value if owner else "missing"
                self.bad(f"{sid}: linked to {record.linked_to} which ended {state}, never revived")


class Ids:
    """Deterministic sign-up ids of the real shape (the minute, then 22 characters)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, now: datetime) -> str:
        self.n += 1
        return now.strftime("%Y%m%d%H%M") + f"sim{self.n:019d}"


def faults_for(rng: random.Random) -> Faults:
    """The seed's fault mix: each fault off or on, at a seeded rate."""

    def maybe(p_on: float, low: float, high: float) -> float:
        return rng.uniform(low, high) if rng.random() < p_on else 0.0

    outages = []
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        start = START + timedelta(seconds=rng.uniform(0, 1200))
        outages.append((start, start + timedelta(seconds=rng.choice((30, 150, 600, 1500)))))
    return Faults(
        storage_error=maybe(0.5, 0.01, 0.06),
        landed_conflict=maybe(0.4, 0.01, 0.08),
        landed_error=maybe(0.3, 0.01, 0.05),
        queue_lost=maybe(0.4, 0.02, 0.2),
        queue_duplicate=maybe(0.4, 0.01, 0.05),
        graph_lost=maybe(0.6, 0.05, 0.4),
        graph_ambiguous_not_acted=maybe(0.4, 0.05, 0.3),
        graph_transient=maybe(0.5, 0.05, 0.3),
        graph_429=maybe(0.4, 0.05, 0.4),
        graph_permanent=maybe(0.15, 0.02, 0.1),
        read_lag=maybe(0.5, 1.0, TIMERS.ambiguous_delay * 0.9),
        outages=outages,
    )


class Simulation:
    """The world, the real lifecycle wired on it, and the processes that drive it."""

    def __init__(
        self, seed: int, *, trace: bool = False, faults: Faults | None = None, crash_rate: float | None = None
    ) -> None:
        self.seed = seed
        self.rng = rng = random.Random(seed)
        # No asyncio loop runs here: intake's gather (its insert and enqueue together) becomes the parts awaited
        # one by one, in a seeded order, so both orders (the message before its record, too) are explored.
        intake_module.gather = self._gather
        self.trace_lines: list[str] = []
        self.clock = VirtualClock(START)
        crash = crash_rate if crash_rate is not None else rng.choice((0.0, 0.005, 0.02, 0.05))
        self.scheduler = Scheduler(self.clock, rng, crash, self._trace if trace else None)
        self.tracing = trace
        self.world = World(self.clock, self.scheduler, rng, faults or faults_for(rng))
        w = self.world
        self.store = SimStore(w)
        self.claims = SimAddressBook(w)
        self.index = SimDueIndex(w)
        self.queue = SimQueue(w)
        self.directory = SimDirectory(w, frozenset({"contoso.com"}))
        # The sweeper's cursor exists before the first sign-up (the timer runs from deployment): see
        # test_findings.py for what happens when the first sweeps all fail.
        self.index.bucket = bucket_of(START - timedelta(minutes=1))
        self.directory.add_user(MEMBER, "Member", None)
        self.directory.add_user(CONVERTIBLE, "Member", None)
        self.audit = SimAudit(w)
        self.denials = SimDenials(w)
        self.checks = Checks(w, self.store, self.claims, self.directory)
        f = w.faults
        self.checks.strict = crash == 0 and not (f.storage_error or f.landed_error or f.landed_conflict)
        w.on_invited = self.checks.on_invited  # type: ignore[attr-defined]
        w.on_org_mail = self.checks.on_org_mail  # type: ignore[attr-defined]
        w.on_approver_mail = self.checks.on_approver_mail  # type: ignore[attr-defined]
        w.on_failed = self.checks.on_failed  # type: ignore[attr-defined]
        self.timers = TIMERS
        ids = Ids()
        parts = Parts(
            self.store,
            self.claims,
            self.index,
            self.queue,
            self.directory,
            self.audit,
            self.denials,
            self.timers,
            self.clock,
            POLICY,
            jitter=rng.random,
            denial_memory=1800,
            new_id=ids,
            sweeper_page_size=rng.choice((2, 50)),
        )
        wired = wire(parts)
        self.follow_ups = wired.follow_ups
        self.admission = wired.admission
        self.intake = wired.intake
        self.approvals = wired.approvals
        self.worker = wired.worker
        self.sweeper = wired.sweeper
        self.replayer = Replayer(self.store, self.admission)
        self.conversions = ConversionRequests(
            self.store, self.index, self.queue, self.audit, self.timers, clock=self.clock, new_id=ids
        )
        self.n_workers = rng.choice((1, 2, 2, 3))
        self.n_sweepers = rng.choice((1, 1, 1, 2))
        self.busy: dict[str, datetime | None] = {}  # process -> None while running, or when it may start again
        self.next_sweep = START + timedelta(seconds=rng.uniform(0, SWEEP_PERIOD))
        self.events = self._plan()

    # -- the plan -------------------------------------------------------------------------------

    def _plan(self) -> list[tuple[datetime, str, str]]:
        """The clients' and admins' actions: (when, what, address)."""
        rng = self.rng
        addresses = rng.sample(ADDRESSES, rng.choice((1, 2, 2, 3)))
        events = []
        for _ in range(rng.randint(2, 6)):
            at = START + timedelta(seconds=rng.choice((0, 1, 5, 30, 120, 400, 900, 1300)) + rng.random())
            kind = rng.choices(("submit", "approve", "deny", "replay", "convert"), (10, 3, 1, 1, 1))[0]
            events.append((at, kind, rng.choice(addresses)))
        events.sort(key=lambda e: e[0])
        return events

    # -- tracing --------------------------------------------------------------------------------

    def _trace(self, text: str) -> None:
        self.trace_lines.append(f"{(self.clock.now - START).total_seconds():9.3f} {text}")

    def note(self, text: str) -> None:
        if self.tracing:
            self._trace(text)

    # -- processes ------------------------------------------------------------------------------

    def _op(
        self,
        process: str,
        name: str,
        coro: Coroutine[Any, Any, Any],
        done: Callable[[Any], None],
        error: Callable[[BaseException], None],
        subject: str | None = None,
    ) -> None:
        self.busy[process] = None
        sim = self

        async def run() -> Any:
            return await coro

        def finished(value: Any) -> None:
            sim.busy[process] = sim.clock.now
            sim.note(f"{process} {name} -> {value!r}")
            done(value)

        def failed(exc: BaseException) -> None:
            restart = sim.clock.after(sim.rng.uniform(1, 60)) if isinstance(exc, Crash) else sim.clock.now
            sim.busy[process] = restart
            sim.note(f"{process} {name} !! {type(exc).__name__}: {exc}")
            error(exc)

        op = Op(process, name, run(), finished, failed, self.clock.now)
        op.subject = subject  # type: ignore[attr-defined]
        self.scheduler.start(op)

    def idle(self, process: str) -> bool:
        state = self.busy.get(process, START)
        return state is not None and state <= self.clock.now

    def _unexpected(self, what: str, exc: BaseException, allowed: tuple[type[BaseException], ...]) -> None:
        if not isinstance(exc, (Crash, *allowed)):
            self.checks.bad(f"{what} raised {type(exc).__name__}: {exc}")

    def _start_worker(self, process: str) -> bool:
        visible = self.queue.visible()
        if not visible:
            return False
        message = self.rng.choice(visible)
        message.dequeues += 1
        if message.dequeues > MAX_DEQUEUE:
            self.queue.messages.remove(message)
            self.queue.poison.append(message)
            return True
        message.visible_at = self.clock.after(600)  # held by this process while it runs (the host renews it)
        sid = message.signup_id

        def done(_: Any) -> None:
            if message in self.queue.messages:
                self.queue.messages.remove(message)

        def error(exc: BaseException) -> None:
            self._unexpected("worker.process", exc, (StorageError,))
            if isinstance(exc, Crash):
                message.visible_at = self.clock.after(self.rng.uniform(30, 600))
            elif message.dequeues >= MAX_DEQUEUE:
                self.queue.messages.remove(message)
                self.queue.poison.append(message)
            else:
                message.visible_at = self.clock.after(VISIBILITY)

        self._op(process, f"process({sid[-4:]})", self.worker.process(sid), done, error, sid)
        return True

    def _start_poison(self, process: str) -> bool:
        if not self.queue.poison:
            return False
        message = self.queue.poison.pop(0)
        sid = message.signup_id

        def error(exc: BaseException) -> None:
            self._unexpected("finalise_poisoned", exc, ())
            message.dequeues += 1
            if message.dequeues < 2 * MAX_DEQUEUE + 1:
                self.queue.poison.append(message)

        self._op(process, f"poisoned({sid[-4:]})", self.worker.finalise_poisoned(sid), lambda _: None, error, sid)
        return True

    def _start_sweep(self, process: str) -> None:
        self._op(
            process,
            "sweep",
            self.sweeper.sweep(),
            lambda _: None,
            lambda exc: self._unexpected("sweep", exc, (StorageError,)),
        )

    def _start_event(self, kind: str, address: str) -> None:
        process = f"client-{len(self.busy)}"
        if kind == "submit":
            local, domain = address.split("@")
            form = SignupForm(address, local.title(), domain, None)

            async def submit() -> Signup:
                return await self.intake.submit(form)

            def accepted(signup: Signup) -> None:
                self.checks.accepted[signup.id] = self.clock.now

            self._op(
                process,
                f"submit({local})",
                submit(),
                accepted,
                lambda exc: self._unexpected("intake", exc, (StorageError, PermissionError, PortalError)),
            )
        elif kind in {"approve", "deny"}:
            pending = [
                s.id
                for s in self.store.records.values()
                if s.status in {Status.PENDING_APPROVAL, Status.RECEIVED} and s.policy_action == "review"
            ]
            if not pending:
                return
            sid = self.rng.choice(pending)

            async def decide() -> Any:
                if kind == "approve":
                    return await self.approvals.approve(sid, APPROVER, None)
                return await self.approvals.deny(sid, APPROVER, "no")

            self._op(
                process,
                f"{kind}({sid[-4:]})",
                decide(),
                lambda _: None,
                lambda exc: self._unexpected(kind, exc, (StorageError, Exception)),
            )
        elif kind == "replay":
            ids = tuple(s.id for s in self.store.records.values() if s.status is Status.FAILED)
            if not ids:
                return

            async def replay() -> list[Any]:
                return [r async for r in self.replayer.replay(Selection(ids=ids))]

            self._op(
                process,
                "replay",
                replay(),
                lambda _: None,
                lambda exc: self._unexpected("replay", exc, (StorageError,)),
            )
        elif kind == "convert":
            user = self.directory.users[CONVERTIBLE.casefold()][0]
            options = ConversionOptions(send_message=self.rng.random() < 0.5)

            async def convert() -> Signup:
                return await self.conversions.submit(user.id, CONVERTIBLE, options, APPROVER)

            def accepted_conversion(signup: Signup) -> None:
                self.checks.accepted[signup.id] = self.clock.now

            self._op(
                process,
                "convert",
                convert(),
                accepted_conversion,
                lambda exc: self._unexpected("conversion", exc, (StorageError,)),
            )

    # -- the loop ---------------------------------------------------------------------------------

    def settled(self) -> bool:
        if self.events or self.scheduler.ops or self.queue.poison:
            return False
        for sid in self.checks.accepted:
            record = self.store.records.get(sid)
            if record is None or not record.status.terminal or record.follow_up_open:
                return False
            if record.status is Status.LINKED:
                owner = self.store.records.get(record.linked_to or "")
                if owner is None or owner.status not in {Status.INVITED, Status.UNKNOWN, Status.LINKED}:
                    return False
        return not self.queue.messages

    async def _gather(self, *parts: Any, return_exceptions: bool = False) -> list[Any]:
        """``asyncio.gather`` for the simulator: the parts awaited one after another in a seeded order."""
        order = list(range(len(parts)))
        self.rng.shuffle(order)
        results: list[Any] = [None] * len(parts)
        for position, index in enumerate(order):
            try:
                results[index] = await parts[index]
            except Exception as exc:
                if not return_exceptions:
                    raise
                results[index] = exc
            except BaseException:  # a crash of the process: the parts not started never will be
                for later in order[position + 1 :]:
                    parts[later].close()
                raise
        return results

    def run(self, max_steps: int = 20000) -> Result:
        original = IllegalTransition.__init__
        violations = self.world.violations

        def spotted(exc: IllegalTransition, *args: Any) -> None:
            violations.add(f"IllegalTransition raised: {args[0] if args else ''}")
            original(exc, *args)

        IllegalTransition.__init__ = spotted  # type: ignore[method-assign]
        logging.disable(logging.CRITICAL)  # thousands of runs: the lifecycle's own logs would drown the report
        try:
            self._loop(max_steps)
        finally:
            IllegalTransition.__init__ = original  # type: ignore[method-assign]
            logging.disable(logging.NOTSET)
        self.checks.deadlines(final_check=not self.settled())
        self.checks.linked()
        finals: dict[str, int] = {}
        for sid in self.checks.accepted:
            record = self.store.records.get(sid)
            key = record.status.value if record else "missing"
            finals[key] = finals.get(key, 0) + 1
        return Result(
            self.seed,
            list(violations.found),
            self.scheduler.steps,
            dict(self.scheduler.crash_sites),
            len(self.checks.accepted),
            finals,
            self.trace_lines,
            self.clock.now,
        )

    def _loop(self, max_steps: int) -> None:
        horizon = START + timedelta(hours=6)
        workers = [f"worker-{i}" for i in range(self.n_workers)]
        sweepers = [f"sweeper-{i}" for i in range(self.n_sweepers)]
        while self.scheduler.steps < max_steps:
            now = self.clock.now
            choices: list[Callable[[], Any]] = []
            for op in self.scheduler.ready():
                choices.append(lambda op=op: self._resume(op))
            while self.events and self.events[0][0] <= now:
                _, kind, address = self.events.pop(0)
                self.note(f"event {kind} {address}")
                self._start_event(kind, address)
            if self.next_sweep <= now:
                for process in sweepers:
                    if self.idle(process):
                        choices.append(lambda p=process: self._start_sweep(p))
                        break
                self.next_sweep += timedelta(seconds=SWEEP_PERIOD)
            if self.queue.visible():
                for process in workers:
                    if self.idle(process):
                        choices.append(lambda p=process: self._start_worker(p))
            if self.queue.poison and self.idle("poison"):
                choices.append(lambda: self._start_poison("poison"))
            if choices:
                self.rng.choice(choices)()
                continue
            if self.scheduler.ready():
                continue
            if self.settled() or now >= horizon:
                return
            wakes = [self.next_sweep]
            wakes.extend(op.wake for op in self.scheduler.ops)
            wakes.extend(m.visible_at for m in self.queue.messages)
            if self.events:
                wakes.append(self.events[0][0])
            wakes.extend(t for t in self.busy.values() if t is not None)
            self.clock.now = min(t for t in wakes if t > now)
            self.checks.deadlines()
        self.checks.bad(f"did not settle within {max_steps} steps")

    def _resume(self, op: Op) -> None:
        self.world.current[0] = getattr(op, "subject", None)
        if self.tracing:
            self._trace(f"{op.process} {op.name} @ {op.label}")
        self.scheduler.resume(op)
        self.world.current[0] = None


def simulate(seed: int, *, trace: bool = False) -> Result:
    """Run one seed; its result (``violations`` empty when every invariant held)."""
    return Simulation(seed, trace=trace).run()


def _summary(seed: int) -> tuple[int, list[str], int, dict[str, int]]:
    result = simulate(seed)
    return seed, result.violations, result.steps, result.crash_sites


def run_seeds(seeds: range, jobs: int = 1) -> list[tuple[int, list[str], int, dict[str, int]]]:
    """Run ``seeds`` (in ``jobs`` processes): (seed, violations, steps, crash sites) for each, in seed order."""
    if jobs <= 1:
        return [_summary(seed) for seed in seeds]
    import multiprocessing

    # spawn, not fork: the test session may hold threads (the local services' fixtures) a fork would copy mid-lock
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs) as pool:
        return pool.map(_summary, seeds, chunksize=max(1, len(seeds) // (jobs * 8)))
