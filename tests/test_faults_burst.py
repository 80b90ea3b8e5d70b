"""A thousand mixed sign-ups at once through one host, with faults; then the stats aggregates equal a recount of
the records. One run carries what were two 1,000-sign-up tests (the burst and the recount): a module of its own,
so that ``make test``'s workers (one module each at a time) run this, the suite's longest test, beside the other
fault tests.

The host is a real process on the module's own Azurite and the Graph emulator (in process, over real HTTP through
msgraph-sdk). It is sent, all at once over HTTP, sign-ups approved by the policy (repeats of one address among
them: linked), sign-ups for review and sign-ups the policy refuses; Graph refuses (403), is unavailable (503) and
acts-then-loses its answer (504 after the act). The reviews are then approved and denied, some twice
(``already_decided``), and the host invites the approved. In the host and in the test's deciding process, one
index update in ten is lost after its record write landed (``tests/lossy_app.py``: the process dying between
the two), and the host's own sweeper does not run. So before the test's sweep the index disagrees with the
records; after the sweeper has met every request, every day's summary, the overview and the request rows
equal a recount. Throughout: every request final, one invitation mail at most per address and exactly one for
every address invited.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from devhost.processes import ROOT, Service, free_port, http_ok, start, wait_until
from graph_emulator.server import Fault, GraphEmulator
from shared.access import Caller
from shared.lifecycle.models import Signup, Status
from shared.lifecycle.store import ROW_KEY, TableDueIndex, bucket_of, from_entity
from shared.services import Services, build_services
from shared.settings import load_settings
from shared.stats import TableDayIndex, row_of
from shared.stats.index import STATUS_KEY
from tests.conftest import FAST_TIMERS, host_env
from tests.fault_stack import Stack, mails, settle
from tests.lossy_app import LossyIndex

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

APPROVER = Caller("principal", "approver@contoso.com")
BUDGET = {"GRAPH_WRITE_BUDGET": "30000", "GRAPH_INVITATION_BUDGET": "30000"}
# What a status view shows once nothing more will happen (a linked repeat shows its owner's outcome).
SETTLED_VIEWS = {"invited", "failed", "denied"}


@pytest.fixture
async def services(stack: Stack, emulator: GraphEmulator) -> AsyncIterator[Services]:
    """The test's own services on the host's tables (it decides, sweeps and reads the records)."""
    stack.env = host_env(stack.connection, stack.graph, **BUDGET, TEST_LOSSY_INDEX_RATE="0.1")
    # The host's own sweeper stays idle (the test sweeps, once the lost updates have shown).
    stack.env["SWEEP_SCHEDULE"] = "0 0 0 1 1 *"
    settings = load_settings({**stack.env, **FAST_TIMERS, **BUDGET, "SWEEP_SCHEDULE": "0 0 0 1 1 *"})
    emulator.config.write_budget = emulator.config.invitation_budget = 30000
    emulator._buckets()
    built = build_services(settings)
    try:
        yield built
    finally:
        await built.aclose()


def start_lossy_host(env: dict[str, str], logs: Path, app_dir: Path) -> tuple[Service, str]:
    """A host serving ``tests/lossy_app.py`` as the app (``--app-dir``): the real app, its index lossy (call it
    off the event loop, which serves the emulator)."""
    app_dir.mkdir()
    shutil.copy(ROOT / "tests" / "lossy_app.py", app_dir / "function_app.py")
    shutil.copy(ROOT / "host.json", app_dir / "host.json")
    port = free_port()
    argv = [sys.executable, "-m", "devhost", "--port", str(port), "--app-dir", str(app_dir)]
    host = start("devhost", [*argv, "--settings", str(logs / "none.json")], logs, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/admin/host/status"), host, 60, "function host")
    except BaseException:
        host.stop()
        raise
    return host, url


def host_lost(host: Service) -> int:
    """Index updates the host lost: the app logs each one."""
    return host.log_path.read_text(errors="replace").count("lifecycle.index_failed")


async def records(services: Services) -> list[Signup]:
    """Every record (a test may scan; the app never does)."""
    client = services.day_index.client  # type: ignore[union-attr]
    found = client.query_entities("RowKey eq @row", parameters={"row": ROW_KEY})
    return [from_entity(e, e.metadata.get("etag")) async for e in found]


def settled(signup: Signup) -> bool:
    return signup.status.terminal and not signup.follow_up_open


async def until_settled(services: Services, count: int, *, reviews: bool, within: float = 240) -> list[Signup]:
    """Wait (reading the records every second, not a thousand statuses) until ``count`` records are settled (or
    wait for a decision, when ``reviews``)."""
    found: list[Signup] = []

    async def done() -> bool:
        nonlocal found
        found = [r for r in await records(services) if r.write_token]
        waiting = (Status.PENDING_APPROVAL,) if reviews else ()
        return len(found) == count and all(settled(r) or r.status in waiting for r in found)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await done():
        left = Counter(r.status.value for r in found if not settled(r))
        assert loop.time() < deadline, f"not settled after {within}s: {dict(left)} of {len(found)}"
        await asyncio.sleep(1.0)
    return found


async def drive(services: Services, ids: list[str], within: float = 120.0) -> None:
    """Deliver every request to the test's worker, round after round, until all are settled."""
    store = services.worker._store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = list(ids)

    async def one(signup_id: str) -> bool:
        current = await store.get(signup_id)
        if current is not None and settled(current):
            return True
        await services.worker.process(signup_id)
        after = await store.get(signup_id)
        return after is not None and settled(after)

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


async def test_a_thousand_mixed_signups_with_faults_end_once_each_and_the_aggregates_equal_a_recount(
    stack: Stack, services: Services, emulator: GraphEmulator, tmp_path: Path
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
    assert stack.env is not None
    stack.host, stack.url = await asyncio.to_thread(start_lossy_host, stack.env, stack.logs, tmp_path / "app")

    # 1,000 sign-ups at once: 600 approved by the policy (400 addresses, 200 repeats), 350 for review, 50 refused.
    plan = [f"burst{n % 400:03d}@fabrikam.com" for n in range(600)]
    plan += [f"r{n}@northwind.com" for n in range(350)]
    plan += [f"b{n}@blocked.example.com" for n in range(50)]
    rng.shuffle(plan)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits) as client:

        async def post(email: str) -> httpx.Response:
            return await client.post("/api/signups", json={"email": email, "displayName": email.split("@")[0]})

        answers = await asyncio.gather(*(post(e) for e in plan))
        codes = Counter((e.split("@")[1], a.status_code) for e, a in zip(plan, answers, strict=True))
        assert codes == {("fabrikam.com", 202): 600, ("northwind.com", 202): 350, ("blocked.example.com", 403): 50}
        # Paths: they are asked again of the host started at the end.
        urls = [httpx.URL(a.json()["statusUrl"]).raw_path.decode() for a in answers if a.status_code == 202]

        reviewed = [r for r in await until_settled(services, 950, reviews=True) if r.status is Status.PENDING_APPROVAL]
        assert len(reviewed) == 350

        async def decide(n: int, record: Signup) -> None:
            if n % 2:
                await services.approvals.approve(record.id, APPROVER, None)
            else:
                await services.approvals.deny(record.id, APPROVER, "not a partner")
            if n % 7 == 0:  # asked twice: already_decided, nothing changes
                again = services.approvals.approve if n % 2 else services.approvals.deny
                assert (await again(record.id, APPROVER, "twice"))["result"] == "already_decided"

        gate = asyncio.Semaphore(32)

        async def gated(n: int, record: Signup) -> None:
            async with gate:
                await decide(n, record)

        await asyncio.gather(*(gated(n, r) for n, r in enumerate(reviewed)))
        await until_settled(services, 950, reviews=False)
    host = stack.host
    await stack.stop_host()

    final = Counter(r.status.value for r in await records(services) if r.write_token)
    assert final["invited"] > 300 and final["failed"] > 10 and final["denied"] >= 175 and final["linked"] > 0
    expected = await recount(services)
    days = sorted(expected)
    lost = lossy.lost + host_lost(host)
    assert lossy.lost > 5 and lost > 20
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
    assert all(settled(r) for r in await records(services) if r.write_token)
    expected = await recount(services)
    assert await summaries(index, sorted(expected)) == expected

    stats = await services.overview.stats(30)
    shown = {d["date"]: d["counts"] for d in stats["days"] if d["counts"]}
    by_status = {
        day.isoformat(): {k[len(STATUS_KEY) :]: v for k, v in counts.items() if k.startswith(STATUS_KEY)}
        for day, counts in expected.items()
    }
    assert shown == by_status
    invited_count = sum(c[STATUS_KEY + "invited"] for c in expected.values())
    assert stats["timeToInvite"]["count"] == invited_count
    failed = Counter({k: v for c in expected.values() for k, v in c.items() if k.startswith("error:")})
    assert {f"error:{f['code']}": f["count"] for f in stats["failures"]} == failed
    assert stats["attention"]["pendingReview"] == 0
    assert stats["budget"]["limit"] == 30000 and 0 <= stats["budget"]["fraction"] <= 1

    # One invitation mail per address invited and none for any other; a second invitation only where Graph had
    # acted and lost its answer, and then without a mail.
    sent = mails(emulator)
    invited = {r.email for r in await records(services) if r.status is Status.INVITED}
    assert set(sent) == invited and set(sent.values()) == {1}
    silent = {i["email"] for i in emulator.invitations if not i["mailed"]}
    lost_answers = {
        str(r.body["invitedUserEmailAddress"]).lower()
        for r in emulator.requests
        if r.operation == "invitation" and r.status == 504
    }
    assert silent <= lost_answers

    # Every request final as its requester sees it, through a host serving the app itself (the followers of
    # owners that failed were revived by the sweep).
    await stack.start_host()
    async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits) as client:
        views = await settle(client, urls, within=60, final=SETTLED_VIEWS)
    assert len(views) == 950 and {v["status"] for v in views} == SETTLED_VIEWS
