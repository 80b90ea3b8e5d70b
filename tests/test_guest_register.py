"""The register of guests the portal made: records, the due index, ``record_invited`` and the backfill.

The Table implementation runs against Azurite; the fake (``tests/fake_guest_register.py``) against the
same contract where the behaviour is the protocol's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from shared.errors import ConcurrencyConflict
from shared.guests import (
    GuestDue,
    GuestRecord,
    GuestRegister,
    GuestState,
    TableGuestRegister,
    backfill,
    due_day,
    record_invited,
)
from shared.lifecycle.models import Signup, Status, new_signup_id
from shared.lifecycle.store import TableSignupStore, to_entity
from shared.policy import parse_policy
from shared.settings import Settings
from shared.storage import build_table_client
from tests.fake_guest_register import FakeGuestRegister

GROUP_A = "3f7c2d1e-9a4b-4c8d-b1e2-5a6f7c8d9e01"
GROUP_B = "4f7c2d1e-9a4b-4c8d-b1e2-5a6f7c8d9e02"
SPONSOR = "6d1b7d5e-3c5f-4c5b-9a7a-0f0e1d2c3b4a"
INVITED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
POLICY = parse_policy(
    {
        "defaultApprovers": ["desk@contoso.com"],
        "profiles": [
            {
                "name": "partners",
                "domains": ["fabrikam.com"],
                "action": "review",
                "groups": [GROUP_A, GROUP_B],
                "sponsors": [SPONSOR],
                "approvers": ["boss@contoso.com"],
                "lifecycle": {"reviewEveryDays": 180, "unredeemedReminderDays": [7, 14], "unredeemedExpiryDays": 30},
            },
            {"name": "plain", "domains": ["tailspin.com"], "action": "approve", "groups": []},
        ],
    }
)


def _signup(n: int = 1, *, status: Status = Status.INVITED, profile: str = "partners", **extra: Any) -> Signup:
    values: dict[str, Any] = {
        "invited_user_id": f"user-{n}",
        "invited_at": INVITED,
        "policy_profile": profile,
        "groups": {GROUP_A: "due", GROUP_B: "failed:Request_BadRequest"},
        "decided_by": "approver@contoso.com",
        **extra,
    }
    return Signup(
        id=new_signup_id(INVITED - timedelta(minutes=5)),
        email=f"guest{n}@fabrikam.com",
        display_name=f"Guest {n}",
        company=None,
        justification=None,
        status=status,
        created_at=INVITED - timedelta(minutes=5),
        updated_at=INVITED,
        deadline=INVITED + timedelta(days=1),
        **values,
    )


@pytest.fixture
async def table(settings: Settings) -> AsyncIterator[TableClient]:
    client = build_table_client(settings)
    await client.create_table()  # the tests write sign-ups into it directly; the register tolerates it existing
    yield client
    await client.close()


@pytest.fixture(params=["table", "fake"])
def register(request: pytest.FixtureRequest) -> GuestRegister:
    if request.param == "fake":
        return FakeGuestRegister()
    return TableGuestRegister(request.getfixturevalue("table"))


async def test_record_invited_registers_once_with_its_first_due_day(register: GuestRegister) -> None:
    signup = _signup()
    first = await record_invited(signup, register=register, policy=POLICY, now=INVITED)
    assert first is not None and first.etag
    assert (first.user_id, first.signup_id, first.profile) == ("user-1", signup.id, "partners")
    assert first.groups == (GROUP_A,)  # joined or still to join; never a refused one
    assert (first.sponsors, first.approvers) == ((SPONSOR,), ("approver@contoso.com",))
    assert first.due_at == INVITED + timedelta(days=7)  # the first reminder comes before review and expiry
    assert first.state is GuestState.ACTIVE and first.redeemed_at is None
    assert await register.due("20261109", 10) == [GuestDue("20261109", "user-1")]

    again = await record_invited(signup, register=register, policy=POLICY, now=INVITED + timedelta(hours=1))
    assert again == first  # a redelivery changes nothing
    stored = await register.get("user-1")
    assert stored == first
    records, token = await register.page(10, None)
    assert [r.user_id for r in records] == ["user-1"] and token is None


async def test_a_profile_without_rules_is_registered_but_never_due(register: GuestRegister) -> None:
    record = await record_invited(_signup(2, profile="plain", decided_by=None), register=register, policy=POLICY)
    assert record is not None and record.due_at is None
    assert record.approvers == ("desk@contoso.com",) and record.sponsors == ()
    assert await register.due("20261109", 10) == []


async def test_what_is_not_an_invited_guest_is_not_registered(register: GuestRegister) -> None:
    assert await record_invited(_signup(3, status=Status.FAILED), register=register, policy=POLICY) is None
    assert await record_invited(_signup(4, invited_user_id=None), register=register, policy=POLICY) is None
    assert await register.page(10, None) == ([], None)


async def test_records_are_replaced_only_with_their_etag_and_the_index_is_bounded(register: GuestRegister) -> None:
    record = await register.insert(GuestRecord("user-9", "s-9", "partners", INVITED, due_at=INVITED))
    assert record is not None
    assert await register.insert(GuestRecord("user-9", "s-other", None, INVITED)) is None
    blocked = await register.replace(record.evolve(state=GuestState.BLOCKED, reminders=2))
    assert (await register.get("user-9")) == blocked and blocked.state is GuestState.BLOCKED
    with pytest.raises(ConcurrencyConflict):
        await register.replace(record.evolve(state=GuestState.DELETED))
    for n in range(7):
        await register.schedule(GuestDue("20261201", f"u{n}"))
    await register.schedule(GuestDue("20261201", "u0"))  # idempotent
    assert len(await register.due("20261201", 5)) == 5
    assert len(await register.due("20261201", 100)) == 7
    await register.unschedule([GuestDue("20261201", "u0"), GuestDue("20261201", "gone")])
    assert [e.user_id for e in await register.due("20261201", 100)] == [f"u{n}" for n in range(1, 7)]
    assert await register.get("nobody") is None


async def test_the_table_register_pages_only_guest_records(table: TableClient) -> None:
    register = TableGuestRegister(table)
    for n in range(5):
        await register.insert(GuestRecord(f"user-{n}", f"s-{n}", None, INVITED))
    await register.schedule(GuestDue("20261201", "user-0"))
    await table.create_entity(to_entity(_signup(99)))  # a sign-up in the same table is not a guest
    seen: list[str] = []
    token: str | None = None
    while True:
        records, token = await register.page(2, token)
        assert len(records) <= 2
        seen += [r.user_id for r in records]
        if token is None:
            break
    assert sorted(seen) == [f"user-{n}" for n in range(5)]


async def test_backfill_registers_every_invited_signup_once(table: TableClient) -> None:
    store, register = TableSignupStore(table), TableGuestRegister(table)
    for n in range(5):
        await table.create_entity(to_entity(_signup(n)))
    await table.create_entity(to_entity(_signup(10, status=Status.PENDING_APPROVAL)))
    await table.create_entity(to_entity(_signup(11, invited_user_id=None)))
    report = await backfill(store, register, POLICY, page_size=2)
    assert (report.read, report.registered, report.already, report.skipped, report.token) == (6, 5, 0, 1, None)
    records, _ = await register.page(100, None)
    assert sorted(r.user_id for r in records) == [f"user-{n}" for n in range(5)]
    # Their first due days are past: indexed under today, where the sweep reads from its cursor on.
    assert len(await register.due("20261109", 100)) == 0
    assert len(await register.due(due_day(datetime.now(UTC)), 100)) == 5
    again = await backfill(store, register, POLICY, page_size=2)
    assert (again.registered, again.already) == (0, 5)
    bounded = await backfill(store, register, POLICY, page_size=2, max_pages=1)
    assert bounded.read <= 2 and bounded.token is not None


async def test_the_recorder_binds_register_policy_and_default_sponsors() -> None:
    from shared.guests import GuestRecorder
    from shared.policy import FixedPolicy

    register = FakeGuestRegister()
    recorder = GuestRecorder(register, FixedPolicy(POLICY), default_sponsors=("sponsor-from-settings",))
    record = await recorder.record_invited(_signup(5, profile="plain"))
    assert record is not None and record.sponsors == ("sponsor-from-settings",)
    assert await recorder.record_invited(_signup(6, status=Status.QUEUED)) is None
    assert list(register.records) == ["user-5"]


async def test_the_sweep_cursor_moves_only_from_what_was_read(register: GuestRegister) -> None:
    assert await register.cursor() == (None, None)
    first = await register.advance("20261201", None)
    assert first is not None
    assert await register.advance("20261202", None) is None  # another sweep set it first
    assert await register.cursor() == ("20261201", first)
    second = await register.advance("20261202", first)
    assert second is not None and await register.advance("20261203", first) is None  # stale ETag
    assert await register.cursor() == ("20261202", second)
