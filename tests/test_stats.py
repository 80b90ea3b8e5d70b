"""The day index (``shared.stats``) on a real Azurite: exact, idempotent, transactional, repaired by the sweeper;
the list through it; the overview's figures."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from shared.errors import ValidationFailed
from shared.lifecycle.models import Signup, Status, new_signup_id, new_write_token
from shared.lifecycle.store import DueEntry, TableDueIndex, TableSignupStore, bucket_of
from shared.lifecycle.transitions import Event
from shared.lifecycle.writes import write
from shared.settings import Settings
from shared.stats import Overview, TableDayIndex, list_ids, parse_list
from shared.stats.index import ASCENDING, STATUS_KEY, partition, row_from
from shared.stats.overview import quantile
from shared.storage import build_table_client

NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


@pytest.fixture
async def table(settings: Settings) -> AsyncIterator[TableClient]:
    client = build_table_client(settings)
    yield client
    await client.close()


@pytest.fixture
def index(table: TableClient) -> TableDayIndex:
    return TableDayIndex(table)


def signup(
    status: Status = Status.QUEUED, *, at: datetime = NOW, email: str = "sam@fabrikam.com", **more: Any
) -> Signup:
    """A record as the lifecycle writes it (it carries a write token)."""
    return Signup(
        id=new_signup_id(at),
        email=email,
        display_name="Sam",
        company=None,
        justification=None,
        status=status,
        created_at=at,
        updated_at=at,
        deadline=at + timedelta(days=1),
        write_token=new_write_token(),
        **more,
    )


def moved(record: Signup, status: Status, seconds: float = 1.0, **more: Any) -> Signup:
    return dataclasses.replace(
        record,
        status=status,
        updated_at=record.updated_at + timedelta(seconds=seconds),
        write_token=new_write_token(),
        **more,
    )


async def rows(table: TableClient, day: date) -> list[dict[str, Any]]:
    """The day's request rows (ascending keys), read by a ranged query."""
    query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
    found = table.query_entities(query, parameters={"pk": partition(day), "lo": ASCENDING, "hi": "a."})
    return [dict(entity) async for entity in found]


async def recount(table: TableClient, day: date) -> Counter[str]:
    """The day's counts recounted from its rows (what the summary shards must add up to)."""
    totals: Counter[str] = Counter()
    for entity in await rows(table, day):
        totals.update(row_from(entity).contribution())
    return +totals


async def test_an_update_writes_the_row_and_its_shard_and_a_repeat_writes_nothing(
    index: TableDayIndex, table: TableClient
) -> None:
    record = signup(Status.QUEUED)
    assert await index.indexed(record) is True
    summary = await index.summary(NOW.date())
    assert summary == Counter({STATUS_KEY + "queued": 1})
    stored = await table.get_entity(partition(NOW.date()), ASCENDING + record.id)
    assert stored["status"] == "queued" and stored["domain"] == "fabrikam.com"
    assert "sam@" not in str(dict(stored))  # the address itself is never kept, only its hash
    # The same status again (a retried hook, the sweeper's visit): nothing is written.
    assert await index.indexed(dataclasses.replace(record, updated_at=NOW + timedelta(seconds=5))) is False
    again = await table.get_entity(partition(NOW.date()), ASCENDING + record.id)
    assert again.metadata["etag"] == stored.metadata["etag"]
    # A new status moves the count: -old +new, in the same shard.
    invited = moved(record, Status.INVITED, 42.0, invited_at=NOW + timedelta(seconds=42))
    assert await index.indexed(invited) is True
    summary = await index.summary(NOW.date())
    assert summary == Counter({STATUS_KEY + "invited": 1, "tti:3": 1})  # 42 s: the (30, 60] bucket
    assert await index.indexed(invited) is False
    assert await index.summary(NOW.date()) == summary


async def test_a_record_never_written_by_the_lifecycle_is_not_counted(index: TableDayIndex) -> None:
    """Intake's ``received`` insert (no write token) is counted from its admission on."""
    fresh = dataclasses.replace(signup(Status.RECEIVED), write_token=None)
    assert await index.indexed(fresh) is False
    assert await index.row(fresh.id, fresh.created_at) is None


async def test_an_older_update_is_ignored_unless_forced(index: TableDayIndex) -> None:
    """A slow caller overtaken by a later write does not put the row back; the sweeper's forced repair does."""
    record = signup(Status.QUEUED)
    later = moved(record, Status.FAILED, 10.0, error_code="Authorization_RequestDenied")
    assert await index.indexed(later)
    assert await index.indexed(record) is False
    assert (await index.summary(NOW.date()))[STATUS_KEY + "failed"] == 1
    assert await index.indexed(record, force=True)
    summary = await index.summary(NOW.date())
    assert summary[STATUS_KEY + "queued"] == 1 and summary[STATUS_KEY + "failed"] == 0


async def test_concurrent_updates_of_one_day_keep_rows_and_summaries_equal(
    index: TableDayIndex, table: TableClient
) -> None:
    """60 requests of one day moved through statuses by 60 concurrent callers (every shard contended): the
    summary shards add up to a recount of the rows. Each update is one transaction with an ETag on the shard;
    without the condition (or outside the transaction) updates get lost here."""
    rng = random.Random(7)
    day = NOW - timedelta(days=3)
    path = [Status.QUEUED, Status.INVITING, Status.RETRYING, Status.INVITING, Status.INVITED]

    async def walk(n: int) -> None:
        record = signup(Status.QUEUED, at=day + timedelta(minutes=n % 50), email=f"c{n}@fabrikam.com")
        for step, status in enumerate(path[: rng.randint(1, len(path))]):
            extra = {"invited_at": record.created_at + timedelta(seconds=n)} if status is Status.INVITED else {}
            record = moved(record, status, step + 1.0, **extra)
            await index.indexed(record)

    await asyncio.gather(*(walk(n) for n in range(60)))
    summary = +(await index.summary(day.date()))
    assert summary == await recount(table, day.date())
    assert sum(v for k, v in summary.items() if k.startswith(STATUS_KEY)) == 60


async def test_a_crash_between_the_write_and_its_index_update_is_repaired_by_the_sweeper(
    services: Any, table: TableClient
) -> None:
    """The record is written by a process that dies before its index update (a store without the index);
    the sweeper, meeting the record at its due entry, brings the index in step before dropping the entry."""
    store = services.worker._store
    crashed = TableSignupStore(table)  # the same table, its writes reported to nobody
    record = await store.create(dataclasses.replace(signup(Status.RECEIVED, at=datetime.now(UTC)), write_token=None))
    queued = await write(store, record, Event.ADMIT, Status.QUEUED)
    assert (await services.day_index.row(record.id, record.created_at)).status == "queued"
    claimed = await write(crashed, queued, Event.CLAIM, attempts=1, maybe_invited=True)
    failed = await write(crashed, claimed, Event.REFUSED, maybe_invited=False, error_code="Authorization_RequestDenied")
    assert (await services.day_index.row(record.id, record.created_at)).status == "queued"  # the lost update
    due = TableDueIndex(table)
    # An entry in a minute the sweeper reads now (it stays a minute and its clock-skew margin behind).
    await due.advance(bucket_of(datetime.now(UTC) - timedelta(minutes=4)), (await due.cursor())[1])
    await due.add(DueEntry(bucket_of(datetime.now(UTC) - timedelta(minutes=3)), failed.id))
    report = await services.sweeper.sweep()
    assert report.dropped >= 1
    row = await services.day_index.row(record.id, record.created_at)
    assert row is not None and (row.status, row.code) == ("failed", "Authorization_RequestDenied")
    day = row.day
    assert +(await services.day_index.summary(day)) == await recount(table, day)


async def test_the_list_filters_sorts_and_pages_over_days(index: TableDayIndex) -> None:
    """Rows over five days: every filter, both orders, and pages that follow one another without gaps."""
    made: list[Signup] = []
    for d in range(5):
        for n in range(7):
            at = NOW - timedelta(days=d, minutes=n * 13)
            status = [Status.INVITED, Status.FAILED, Status.PENDING_APPROVAL][n % 3]
            domain = "northwind.com" if n % 2 else "fabrikam.com"
            record = signup(status, at=at, email=f"u{d}-{n}@{domain}", policy_profile=domain.split(".")[0])
            if n == 6:
                record = dataclasses.replace(record, conversion={"user": "x"})
            await index.indexed(record)
            made.append(record)
    today = NOW.date()

    async def walk(**params: str) -> list[str]:
        found: list[str] = []
        token = None
        for _ in range(50):
            query = parse_list({**params, **({"continuationToken": token} if token else {})})
            ids, token = await list_ids(index, query, today)
            found += ids
            if token is None:
                return found
        raise AssertionError("the pages did not end")

    newest = sorted(made, key=lambda s: s.id, reverse=True)
    assert await walk(pageSize="4") == [s.id for s in newest]
    assert await walk(pageSize="6", sort="oldest") == [s.id for s in reversed(newest)]
    assert await walk(status="failed", pageSize="3") == [s.id for s in newest if s.status is Status.FAILED]
    assert await walk(domain="NorthWind.com") == [s.id for s in newest if s.domain == "northwind.com"]
    assert await walk(profile="fabrikam") == [s.id for s in newest if s.policy_profile == "fabrikam"]
    assert await walk(kind="conversion") == [s.id for s in newest if s.conversion]
    span = {"from": (today - timedelta(days=3)).isoformat(), "to": (today - timedelta(days=1)).isoformat()}
    assert await walk(**span) == [s.id for s in newest if 1 <= (today - s.created_at.date()).days <= 3]
    assert await walk(q="U2-3@Northwind.com") == [s.id for s in made if s.email == "u2-3@northwind.com"]


def test_bad_list_parameters_are_named_together() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_list(
            {"status": "nope", "kind": "x", "from": "2026-13-01", "to": "", "sort": "up", "pageSize": "0", "q": "x"}
        )
    assert set(caught.value.errors) == {"status", "kind", "from", "to", "sort", "pageSize", "q"}
    with pytest.raises(ValidationFailed) as caught:
        parse_list({"from": "2026-02-01", "to": "2026-01-01"})
    assert set(caught.value.errors) == {"to"}


def test_quantiles_interpolate_within_their_bucket() -> None:
    buckets = [{"le": 10.0, "count": 2}, {"le": 30.0, "count": 2}, {"le": None, "count": 0}]
    assert quantile(buckets, 4, 0.5) == 10.0 and quantile(buckets, 4, 0.75) == 20.0
    assert quantile(buckets, 0, 0.5) is None


async def test_the_overview_adds_up_the_days_and_explains_failures(index: TableDayIndex) -> None:
    today = datetime.now(UTC)
    records = [
        signup(Status.INVITED, at=today, invited_at=today + timedelta(seconds=8)),
        signup(Status.FAILED, at=today - timedelta(days=1), error_code="Authorization_RequestDenied"),
        signup(Status.FAILED, at=today - timedelta(days=1), error_code="SomethingNew"),
        signup(Status.PENDING_APPROVAL, at=today - timedelta(days=2)),
        signup(Status.RETRYING, at=today, maybe_invited=True),
        signup(Status.FAILED, at=today, conversion={"user": "u"}, error_code="ExistingMember"),
        signup(Status.INVITED, at=today - timedelta(days=40)),  # outside 30 days
    ]
    for record in records:
        await index.indexed(record)
    stats = await Overview(index, None, budget_limit=3000, budget_window=150.0).stats(30)
    assert len(stats["days"]) == 30 and stats["days"][-1]["date"] == today.date().isoformat()
    assert stats["days"][-1]["counts"] == {"invited": 1, "retrying": 1, "failed": 1}
    assert stats["timeToInvite"]["count"] == 1 and stats["timeToInvite"]["p50"] is not None
    codes = {f["code"]: f for f in stats["failures"]}
    assert codes["Authorization_RequestDenied"]["cause"] and codes["Authorization_RequestDenied"]["fix"]
    assert codes["SomethingNew"]["cause"] is None and codes["SomethingNew"]["fix"] is None
    assert stats["attention"] == {"pendingReview": 1, "inDoubt": 1, "conversionsToRerun": 1}
    assert stats["budget"] == {"limit": 3000, "windowSeconds": 150.0, "used": 0, "fraction": 0.0}


async def test_the_budget_is_read_from_the_shared_schedule(index: TableDayIndex, table: TableClient) -> None:
    """Writes spoken for in the window come from the stored schedule's ``tat`` (read only)."""
    import time

    from shared.graph.budget import WRITES, BucketState, TableBudgetStore

    budget = TableBudgetStore(table)
    overview = Overview(index, budget, budget_limit=3000, budget_window=150.0)
    assert (await overview.budget())["used"] == 0  # never written
    rate = 3000 * 0.975 / 150.0
    await budget.write(WRITES, BucketState(time.time() - 150.0 + 600 / rate))
    figures = await overview.publish_budget()
    assert 595 <= figures["used"] <= 600 and figures["fraction"] == round(figures["used"] / 3000, 4)


async def test_the_overview_answers_from_its_last_figures_within_the_cache_time(index: TableDayIndex) -> None:
    today = datetime.now(UTC)
    cached = Overview(index, None, budget_limit=3000, budget_window=150.0, cache_seconds=60)
    fresh = Overview(index, None, budget_limit=3000, budget_window=150.0)
    first = await cached.stats(7)
    await index.indexed(signup(Status.INVITED, at=today, invited_at=today))
    assert await cached.stats(7) == first  # the same figures, with the same generatedAt
    assert (await fresh.stats(7))["days"][-1]["counts"] == {"invited": 1}
    assert (await cached.stats(8))["days"][-1]["counts"] == {"invited": 1}  # each days value apart
