"""The guest sweep that acts (``shared.guests`` sweep, acting, digest, reviews), on Azurite with the fake directory.

A settable clock moves through the rules' days; the fake directory records every write and mail and can
lose answers. At most one mail per reminder and per reviewer's day, at most one write per action, and
nothing ever for a guest the portal did not register.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from shared.audit import MemoryAuditLog
from shared.errors import AmbiguousGraphError, DirectoryUnavailable, RestoreWindowPassed, TransientGraphError
from shared.guests import (
    Digests,
    GuestActions,
    GuestAdmin,
    GuestRecord,
    GuestState,
    GuestSweep,
    TableGuestRegister,
    record_invited,
)
from shared.lifecycle.models import Signup
from shared.policy import FixedPolicy, parse_policy
from shared.settings import Settings
from shared.storage import Table, build_table_client
from tests.fakes import Clock, FakeDirectory, FakeStore
from tests.test_guest_register import _signup

START = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
DAY = 86400.0
LEASE = 60.0
GROUP = "3f7c2d1e-9a4b-4c8d-b1e2-5a6f7c8d9e01"
POLICY = parse_policy(
    {
        "defaultApprovers": ["desk@contoso.com"],
        "profiles": [
            {
                "name": "unredeemed",
                "domains": ["fabrikam.com"],
                "action": "approve",
                "groups": [GROUP],
                "approvers": ["boss@contoso.com"],
                "lifecycle": {
                    "unredeemedReminderDays": [2, 4],
                    "unredeemedExpiryDays": 6,
                    "onRemove": "blockSignIn",
                },
            },
            {
                "name": "reviewed",
                "domains": ["tailspin.com"],
                "action": "approve",
                "groups": [GROUP],
                "approvers": ["boss@contoso.com"],
                "lifecycle": {
                    "reviewEveryDays": 10,
                    "reviewGraceDays": 3,
                    "onNoAnswer": "blockSignInAndDelete",
                    "onRemove": "blockSignIn",
                    "deleteAfterDays": 5,
                },
            },
            {"name": "plain", "domains": ["wingtip.com"], "action": "approve", "groups": []},
            {
                "name": "groups",
                "domains": ["adatum.com"],
                "action": "approve",
                "groups": [GROUP],
                "approvers": ["boss@contoso.com"],
                "lifecycle": {"unredeemedExpiryDays": 3, "onRemove": "removeGroups"},
            },
        ],
    }
)


@dataclass
class World:
    clock: Clock
    directory: FakeDirectory
    store: FakeStore
    audit: MemoryAuditLog
    register: TableGuestRegister
    actions: GuestActions
    sweep: GuestSweep
    admin: GuestAdmin

    async def invite(self, n: int, profile: str, domain: str) -> str:
        """A guest invited now through ``profile``, registered as the lifecycle does."""
        user = self.directory.add_user(f"guest{n}@{domain}", "Guest", "PendingAcceptance")
        self.directory.members.add((GROUP, user.id))
        signup = _signup(
            n,
            profile=profile,
            invited_user_id=user.id,
            invited_at=self.clock(),
            groups={GROUP: "done"},
            redeem_url=f"https://login.example/redeem/{n}",
            decided_by=None,
        )
        self.store.records[signup.id] = signup  # invited already: put as the lifecycle left it
        await record_invited(signup, register=self.register, policy=POLICY, now=self.clock())
        return user.id

    async def days(self, n: float) -> None:
        """Let ``n`` days pass, sweeping every six hours as the timer would."""
        for _ in range(int(n * 4)):
            self.clock.advance(DAY / 4)
            self.directory.guests.clock = self.clock
            await self.sweep.sweep()

    async def record(self, user_id: str) -> GuestRecord:
        record = await self.register.get(user_id)
        assert record is not None
        return record

    def writes(self, user_id: str) -> list[str]:
        return [op for op, target, _ in self.directory.guests.calls if target.endswith(user_id)]

    def mails_to(self, address: str) -> list[Any]:
        return [m for _, m in self.directory.sent_mails if address in m.to]

    async def events(self, signup_id: str) -> list[str]:
        return [e.event for e in await self.audit.history(signup_id)]


@pytest.fixture
async def table(settings: Settings) -> AsyncIterator[TableClient]:
    client = build_table_client(settings)
    try:
        yield client
    finally:
        await client.delete_table()
        await client.close()


@pytest.fixture
def world(table: TableClient) -> World:
    clock = Clock(START)
    directory = FakeDirectory()
    directory.guests.clock = clock
    store, audit, register = FakeStore(), MemoryAuditLog(), TableGuestRegister(table)
    policy = FixedPolicy(POLICY)
    digests = Digests(
        Table(table), directory, sender="portal@contoso.com", reviews_url="https://portal/api/manage", lease=LEASE
    )
    actions = GuestActions(
        register,
        directory,
        store,
        audit,
        digests,
        policy,
        sender="portal@contoso.com",
        organisation="Contoso",
        contact="help@contoso.com",
        lease=LEASE,
        clock=clock,
    )
    sweep = GuestSweep(register, actions, digests, policy, clock=clock)
    return World(clock, directory, store, audit, register, actions, sweep, GuestAdmin(actions, directory, policy))


def _signup_of(world: World, user_id: str) -> Signup:
    return next(s for s in world.store.records.values() if s.invited_user_id == user_id)


async def test_an_unredeemed_guest_is_reminded_twice_then_blocked_and_others_are_never_touched(world: World) -> None:
    unredeemed = await world.invite(1, "unredeemed", "fabrikam.com")
    plain = await world.invite(2, "plain", "wingtip.com")
    stranger = world.directory.add_user("stranger@fabrikam.com", "Guest", "PendingAcceptance").id
    await world.days(2.1)
    assert len(world.mails_to("guest1@fabrikam.com")) == 1
    assert "https://login.example/redeem/1" in world.mails_to("guest1@fabrikam.com")[0].html_body
    await world.days(2)
    assert len(world.mails_to("guest1@fabrikam.com")) == 2
    assert (await world.record(unredeemed)).reminders == 2
    await world.days(2)
    record = await world.record(unredeemed)
    assert record.state is GuestState.BLOCKED and record.intent is None
    assert world.writes(unredeemed) == ["disable"]
    assert unredeemed in world.directory.guests.disabled
    await world.days(3)  # blockSignIn alone never deletes
    assert world.writes(unredeemed) == ["disable"] and len(world.mails_to("guest1@fabrikam.com")) == 2
    signup = _signup_of(world, unredeemed)
    assert await world.events(signup.id) == [
        "guest_reminder_sent",
        "guest_reminder_sent",
        "guest_blocked",
    ]
    for untouched, address in ((plain, "guest2@wingtip.com"), (stranger, "stranger@fabrikam.com")):
        assert world.writes(untouched) == [] and world.mails_to(address) == []
    assert (await world.record(plain)).state is GuestState.ACTIVE
    assert await world.register.get(stranger) is None


async def test_a_reviewed_guest_is_kept_removed_restored_then_deleted_after_no_answer(world: World) -> None:
    guest = await world.invite(3, "reviewed", "tailspin.com")
    world.directory.guests.clock = world.clock
    await world.directory.set_sign_in_enabled(guest, True)  # redeemed and enabled, as a working guest is
    world.directory.guests.calls.clear()
    await world.days(10.1)
    assert (await world.record(guest)).state is GuestState.REVIEW_PENDING
    listed = await world.admin.reviews(50, None)
    assert [i["userId"] for i in listed["items"]] == [guest] and listed["items"][0]["reviewDueBy"]
    assert len(world.mails_to("boss@contoso.com")) == 1  # the day's digest, once
    kept = await world.admin.decide([guest], "keep", "boss@contoso.com", "still on the project")
    assert kept == {"results": [{"userId": guest, "result": "kept"}]}
    assert (await world.admin.reviews(50, None))["items"] == []
    await world.days(10.1)
    assert (await world.record(guest)).state is GuestState.REVIEW_PENDING
    assert len(world.mails_to("boss@contoso.com")) == 2  # another day, another digest
    removed = await world.admin.decide([guest, "not-a-guest"], "remove", "boss@contoso.com", None)
    assert removed["results"] == [
        {"userId": guest, "result": "removed"},
        {"userId": "not-a-guest", "result": "not_found"},
    ]
    assert (await world.record(guest)).state is GuestState.BLOCKED
    blocked = await world.admin.in_state(GuestState.BLOCKED, 50, None)
    assert [i["userId"] for i in blocked["items"]] == [guest] and blocked["items"][0]["restorableUntil"] is None
    assert await world.admin.restore(guest, "boss@contoso.com") == {"userId": guest, "state": "active"}
    assert guest not in world.directory.guests.disabled
    # Nobody answers the next review: blocked, then deleted deleteAfterDays later.
    await world.days(10 + 3 + 0.6)
    assert (await world.record(guest)).state is GuestState.BLOCKED
    await world.days(5.1)
    record = await world.record(guest)
    assert record.state is GuestState.DELETED and record.deleted_at is not None
    deleted = await world.admin.in_state(GuestState.DELETED, 50, None)
    assert deleted["items"][0]["restorableUntil"].startswith(
        (record.deleted_at + timedelta(days=30)).date().isoformat()
    )
    assert world.writes(guest) == ["disable", "enable", "disable", "delete"]
    events = await world.events(_signup_of(world, guest).id)
    assert events.count("guest_review_requested") == 3 and "guest_review_kept" in events
    assert events.count("guest_blocked") == 2 and events[-1] == "guest_deleted" and "guest_restored" in events
    # Restored from deleted items within the 30 days, then a second deletion is past the window.
    assert (await world.admin.restore(guest, "boss@contoso.com"))["state"] == "active"
    assert (await world.record(guest)).state is GuestState.ACTIVE


async def test_past_the_thirty_days_a_deleted_guest_cannot_be_restored(world: World) -> None:
    guest = await world.invite(4, "reviewed", "tailspin.com")
    record = await world.record(guest)
    await world.actions._act(record, POLICY.profile("reviewed").lifecycle, "delete")  # type: ignore[union-attr]
    world.clock.advance(31 * DAY)
    with pytest.raises(RestoreWindowPassed):
        await world.admin.restore(guest, "boss@contoso.com")


@pytest.mark.faults
async def test_a_restore_whose_enable_failed_is_finished_by_the_next_try(world: World) -> None:
    guest = await world.invite(9, "reviewed", "tailspin.com")
    rules = POLICY.profile("reviewed").lifecycle  # type: ignore[union-attr]
    await world.actions._act(await world.record(guest), rules, "block-delete")
    await world.actions._act(await world.record(guest), rules, "delete")
    world.directory.guests.faults["enable"] = [(False, TransientGraphError("503", code="serviceNotAvailable"))]
    with pytest.raises(DirectoryUnavailable):
        await world.admin.restore(guest, "boss@contoso.com")  # restored from deleted items, still disabled
    assert (await world.record(guest)).state is GuestState.DELETED
    assert await world.admin.restore(guest, "boss@contoso.com") == {"userId": guest, "state": "active"}
    assert guest not in world.directory.guests.disabled
    assert [op for op in world.writes(guest) if op == "restore"] == ["restore"]


@pytest.mark.faults
async def test_a_lost_mail_answer_is_never_resent_and_a_lost_block_is_settled_by_a_read(world: World) -> None:
    guest = await world.invite(5, "unredeemed", "fabrikam.com")
    world.directory.mail_outcomes = [(True, AmbiguousGraphError("lost", code="Timeout"))]
    await world.days(2.1)
    assert len(world.mails_to("guest5@fabrikam.com")) == 1
    record = await world.record(guest)
    assert record.reminders == 1 and record.intent is None
    world.directory.guests.faults["disable"] = [(True, AmbiguousGraphError("lost", code="Timeout"))]
    await world.days(4)
    assert world.writes(guest) == ["disable"]  # the read found it done: no second write
    assert (await world.record(guest)).state is GuestState.BLOCKED
    assert len(world.mails_to("guest5@fabrikam.com")) == 2
    events = await world.events(_signup_of(world, guest).id)
    assert events == ["guest_reminder_unknown", "guest_reminder_sent", "guest_blocked"]


@pytest.mark.faults
async def test_a_mark_left_by_a_crash_is_settled_without_a_second_mail_or_write(world: World) -> None:
    guest = await world.invite(6, "unredeemed", "fabrikam.com")
    world.clock.advance(2.1 * DAY)
    record = await world.record(guest)
    # A sweep marked the reminder and sent it, then died before settling.
    await world.actions.save(record, intent="remind", intent_at=world.clock())
    await world.directory.send_mail("portal@contoso.com", _reminder(world, guest))
    await world.sweep.sweep()  # within the lease: left alone
    assert len(world.mails_to("guest6@fabrikam.com")) == 1 and (await world.record(guest)).intent == "remind"
    world.clock.advance(LEASE + 1)
    await world.sweep.sweep()
    record = await world.record(guest)
    assert record.intent is None and record.reminders == 1
    assert len(world.mails_to("guest6@fabrikam.com")) == 1
    # A block marked, never sent (the crash came before the PATCH): the read finds it not done, the rules act once.
    world.clock.advance(4 * DAY)
    await world.actions.save(record, intent="block", intent_at=world.clock())
    world.clock.advance(LEASE + 1)
    await world.sweep.sweep()
    assert world.writes(guest) == ["disable"] and (await world.record(guest)).state is GuestState.BLOCKED


@pytest.mark.faults
async def test_a_refused_write_is_retried_later_and_two_sweeps_act_once(world: World) -> None:
    guest = await world.invite(7, "unredeemed", "fabrikam.com")
    world.clock.advance(6.1 * DAY)
    world.directory.guests.faults["disable"] = [(False, TransientGraphError("429", code="TooManyRequests"))]
    await world.sweep.sweep()
    assert (await world.record(guest)).state is GuestState.ACTIVE  # refused before Graph acted: not done
    world.clock.advance(DAY / 24)
    first, second = world.sweep.sweep(), world.sweep.sweep()
    import asyncio

    await asyncio.gather(first, second)
    assert world.writes(guest) == ["disable", "disable"]  # the refused one and one more, not two more
    assert (await world.record(guest)).state is GuestState.BLOCKED


def _reminder(world: World, user_id: str) -> Any:
    from shared.guests.mails import reminder_mail

    signup = _signup_of(world, user_id)
    assert signup.redeem_url is not None
    return reminder_mail(None, signup, signup.redeem_url, "Contoso", "help@contoso.com")


@pytest.mark.faults
async def test_remove_groups_uses_ref_once_and_a_lost_answer_is_settled_by_member_of(world: World) -> None:
    guest = await world.invite(8, "groups", "adatum.com")
    assert (GROUP, guest) in world.directory.members
    world.directory.guests.faults["remove-member"] = [(True, AmbiguousGraphError("lost", code="Timeout"))]
    await world.days(3.5)
    record = await world.record(guest)
    assert record.state is GuestState.REMOVED and record.intent is None and record.due_at is None
    assert (GROUP, guest) not in world.directory.members
    assert world.writes(guest) == ["remove-member"]  # member_of showed it gone: not removed again
    assert guest not in world.directory.guests.disabled  # removeGroups leaves the account
    assert await world.events(_signup_of(world, guest).id) == ["guest_groups_removed"]
    await world.days(2)
    assert world.writes(guest) == ["remove-member"]


async def test_without_lifecycle_rules_the_sweep_reads_nothing() -> None:
    from tests.fake_guest_register import FakeGuestRegister

    register = FakeGuestRegister()
    policy = FixedPolicy(
        parse_policy({"profiles": [{"name": "p", "domains": ["x.com"], "action": "approve", "groups": []}]})
    )
    directory = FakeDirectory()
    digests = Digests(None, directory, sender=None, reviews_url="", lease=LEASE)  # type: ignore[arg-type]
    actions = GuestActions(
        register,
        directory,
        FakeStore(),
        MemoryAuditLog(),
        digests,
        policy,
        sender=None,
        organisation="",
        contact="",
        lease=LEASE,
    )
    report = await GuestSweep(register, actions, digests, policy).sweep()
    assert report.off and register.reads == 0 and report.entries == 0


async def test_rules_whose_action_is_none_stop_looking_once_they_have_passed(world: World) -> None:
    """An expiry with onRemove none, and a review nobody answers under onNoAnswer none: nothing is done, and the
    guest is not looked at again every hour (the review stays listed until someone answers)."""
    policy = parse_policy(
        {
            "profiles": [
                {
                    "name": "soft",
                    "domains": ["fabrikam.com"],
                    "action": "approve",
                    "groups": [],
                    "approvers": ["boss@contoso.com"],
                    "lifecycle": {"reviewEveryDays": 3, "reviewGraceDays": 1, "onRemove": "none"},
                }
            ]
        }
    )
    soft = policy.profile("soft")
    assert soft is not None and soft.lifecycle is not None
    record = GuestRecord("u-soft", "s-soft", "soft", START, due_at=START)
    world.directory.users["soft@fabrikam.com"] = world.directory.add_user("soft@fabrikam.com", "Guest", "Accepted")
    record = record.evolve(user_id=world.directory.users["soft@fabrikam.com"].id)
    stored = await world.register.insert(record)
    assert stored is not None
    world.clock.advance(3.1 * DAY)
    looked = await world.actions.look(stored, soft.lifecycle)
    assert looked is not None and looked[1].state is GuestState.REVIEW_PENDING
    world.clock.advance(1.5 * DAY)
    looked = await world.actions.look(looked[1], soft.lifecycle)
    assert looked is not None and looked[0].step.value == "nothing"
    assert looked[1].state is GuestState.REVIEW_PENDING and looked[1].due_at is None


async def test_digests_read_the_whole_queue_in_pages_one_mail_per_reviewer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More queued guests than one page holds: each reviewer still gets one digest, counting all its guests,
    and a reviewer who had today's digest keeps its entries (read past, not resent) for the next day."""
    from shared.guests import digest as digest_module

    monkeypatch.setattr(digest_module, "PAGE", 3)
    digests = world.actions.digests
    queued = {"a@contoso.com": 4, "b@contoso.com": 1, "c@contoso.com": 7}  # 12 entries: 4 pages, groups across them
    for reviewer, count in queued.items():
        for n in range(count):
            await digests.enqueue(reviewer, f"user-{reviewer[0]}-{n}", "partners")
    report = await digests.send(world.clock())
    assert report.sent == 3 and report.waiting == 0
    for reviewer, count in queued.items():
        mails = world.mails_to(reviewer)
        assert len(mails) == 1, reviewer
        assert mails[0].subject == f"Guest access review: {count} waiting"
    await digests.enqueue("c@contoso.com", "user-c-late", "partners")
    again = await digests.send(world.clock())
    assert again.sent == 0 and again.waiting == 1 and len(world.mails_to("c@contoso.com")) == 1
    world.clock.advance(DAY)
    assert (await digests.send(world.clock())).sent == 1
    assert world.mails_to("c@contoso.com")[-1].subject == "Guest access review: 1 waiting"
