"""The recount: after a mixed run of 1,000 sign-ups with faults, the stats aggregates equal a recount of the
records.

The real services on Azurite and the Graph emulator (in process, over real HTTP through msgraph-sdk): approved
and reviewed sign-ups, repeats of one address (linked), intake refusals, approvals, denials and repeated
decisions; Graph refusing (403), unavailable (503) and acting-then-losing its answer (504 after the act). One
index update in ten is lost after its record write landed (the process dying between the two), and the sweeper
then meets every request once. Before that sweep the index disagrees with the records; after it, every day's
summary, the overview and the request rows equal a recount.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest

from graph_emulator.server import Fault, GraphEmulator
from shared.access import Caller
from shared.errors import SignupForbidden, StorageError
from shared.lifecycle.models import Signup, Status
from shared.lifecycle.store import ROW_KEY, RecordIndex, TableDueIndex, bucket_of, from_entity
from shared.lifecycle.validation import SignupForm
from shared.services import Services, build_services
from shared.settings import Settings, load_settings
from shared.stats import TableDayIndex, row_of
from shared.stats.index import STATUS_KEY
from tests.conftest import FAST_TIMERS, TEST_POLICY

pytestmark = [pytest.mark.e2e, pytest.mark.faults]  # minutes on a loaded machine: with the slow tests

APPROVER = Caller("principal", "approver@contoso.com")


class LossyIndex:
    """The day index behind a process that sometimes dies right after its record write: the update is lost."""

    def __init__(self, real: RecordIndex, rate: float, rng: random.Random) -> None:
        self.real, self.rate, self.rng, self.lost = real, rate, rng, 0

    async def indexed(self, signup: Signup, *, force: bool = False) -> bool:
        if self.rng.random() < self.rate:
            self.lost += 1
            raise StorageError("the process died before its index update")
        return await self.real.indexed(signup, force=force)


@pytest.fixture
async def services(app_env: dict[str, str], emulator: GraphEmulator) -> AsyncIterator[Services]:
    env = {
        **app_env,
        **FAST_TIMERS,
        "SIGNUP_POLICY": TEST_POLICY,
        "GRAPH_WRITE_BUDGET": "30000",
        "GRAPH_INVITATION_BUDGET": "30000",
    }
    settings: Settings = load_settings(env)
    emulator.config.write_budget = emulator.config.invitation_budget = 30000
    emulator._buckets()
    built = build_services(settings)
    try:
        yield built
    finally:
        await built.aclose()


async def records(services: Services) -> list[Signup]:
    """Every record (a test may scan; the app never does)."""
    client = services.day_index.client  # type: ignore[union-attr]
    found = client.query_entities("RowKey eq @row", parameters={"row": ROW_KEY})
    return [from_entity(e, e.metadata.get("etag")) async for e in found]


def settled(signup: Signup) -> bool:
    return signup.status.terminal and not signup.follow_up_open


async def drive(services: Services, ids: list[str], within: float = 240.0) -> None:
    """Deliver every request to the worker, round after round, until all are settled (as the host would)."""
    store = services.worker._store
    gate = asyncio.Semaphore(16)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = list(ids)

    async def one(signup_id: str) -> bool:
        async with gate:
            current = await store.get(signup_id)
            if current is not None and settled(current):
                return True
            if current is not None and current.status is Status.PENDING_APPROVAL:
                return True  # waits for a decision
            await services.worker.process(signup_id)
            after = await store.get(signup_id)
            return after is not None and (settled(after) or after.status is Status.PENDING_APPROVAL)

    while pending:
        done = await asyncio.gather(*(one(i) for i in pending))
        pending = [i for i, ok in zip(pending, done, strict=True) if not ok]
        assert loop.time() < deadline, f"{len(pending)} requests not settled"
        if pending:
            await asyncio.sleep(0.5)


async def recount(services: Services) -> dict[date, Counter[str]]:
    """Each intake day's counts, recounted from the records the lifecycle wrote."""
    days: dict[date, Counter[str]] = {}
    for record in await records(services):
        if record.write_token is None:
            continue  # never written by the lifecycle: not counted (intake refusals)
        row = row_of(record)
        days.setdefault(row.day, Counter()).update(row.contribution())
    return days


async def summaries(index: TableDayIndex, days: list[date]) -> dict[date, Counter[str]]:
    return {day: +(await index.summary(day)) for day in days}


async def test_the_aggregates_equal_a_recount_after_a_mixed_run_with_faults(
    services: Services, emulator: GraphEmulator
) -> None:
    rng = random.Random(21)
    index = services.day_index
    assert index is not None and services.overview is not None
    store = services.worker._store
    lossy = LossyIndex(index, 0.1, rng)
    store.record_index = lossy  # type: ignore[attr-defined]
    due = TableDueIndex(index.client)
    await due.advance(bucket_of(datetime.now(UTC) - timedelta(minutes=2)), None)
    emulator.faults += [
        Fault(kind="403", rate=0.04),
        Fault(kind="503", rate=0.08, retry_after=None),
        Fault(kind="acted504", rate=0.04),
    ]
    # 1,000 sign-ups: 600 approved by the policy (500 addresses, 100 repeats), 350 for review, 50 refused.
    plan = [f"a{n % 500}@fabrikam.com" for n in range(600)]
    plan += [f"r{n}@northwind.com" for n in range(350)]
    plan += [f"b{n}@blocked.example.com" for n in range(50)]
    rng.shuffle(plan)
    gate = asyncio.Semaphore(32)

    async def submit(email: str) -> str | None:
        async with gate:
            try:
                signup = await services.intake.submit(SignupForm(email, "Guest", None, None))
            except SignupForbidden:
                return None
            return signup.id

    ids = [i for i in await asyncio.gather(*(submit(e) for e in plan)) if i is not None]
    assert len(ids) == 950
    await drive(services, ids)
    reviewed = [r for r in await records(services) if r.status is Status.PENDING_APPROVAL]
    assert len(reviewed) == 350

    async def decide(n: int, record: Signup) -> None:
        async with gate:
            if n % 2:
                await services.approvals.approve(record.id, APPROVER, None)
            else:
                await services.approvals.deny(record.id, APPROVER, "not a partner")
            if n % 7 == 0:  # asked twice: already_decided, nothing changes
                again = services.approvals.approve if n % 2 else services.approvals.deny
                assert (await again(record.id, APPROVER, "twice"))["result"] == "already_decided"

    await asyncio.gather(*(decide(n, r) for n, r in enumerate(reviewed)))
    await drive(services, ids)

    final = Counter(r.status.value for r in await records(services) if r.write_token)
    assert final["invited"] > 300 and final["failed"] > 10 and final["denied"] >= 175 and final["linked"] > 0
    expected = await recount(services)
    days = sorted(expected)
    assert lossy.lost > 20
    assert await summaries(index, days) != expected  # the lost updates show before the sweep

    # The sweeper meets every request (its clock an hour on, so every entry of the run is due). It also gives
    # the followers of owners that failed their own turn (revived), which the worker then settles.
    store.record_index = index  # type: ignore[attr-defined]
    services.sweeper._clock = lambda: datetime.now(UTC) + timedelta(hours=1)
    for _ in range(6):
        revived = []
        for _ in range(10):
            report = await services.sweeper.sweep()
            revived += report.revived
            if report.complete:
                break
        assert report.complete
        if not revived:
            break
        await drive(services, revived)
    assert not revived
    expected = await recount(services)
    assert await summaries(index, sorted(expected)) == expected

    stats = await services.overview.stats(30)
    shown = {d["date"]: d["counts"] for d in stats["days"] if d["counts"]}
    by_status = {
        day.isoformat(): {k[len(STATUS_KEY) :]: v for k, v in counts.items() if k.startswith(STATUS_KEY)}
        for day, counts in expected.items()
    }
    assert shown == by_status
    invited = sum(c[STATUS_KEY + "invited"] for c in expected.values())
    assert stats["timeToInvite"]["count"] == invited
    failed = Counter({k: v for c in expected.values() for k, v in c.items() if k.startswith("error:")})
    assert {f"error:{f['code']}": f["count"] for f in stats["failures"]} == failed
    assert stats["attention"]["pendingReview"] == 0
    assert stats["budget"]["limit"] == 30000 and 0 <= stats["budget"]["fraction"] <= 1
