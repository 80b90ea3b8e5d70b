"""What the lifecycle rules would do to a registered guest (``shared.guests.planning``), and the dry run.

The dry run runs the installed ``signup-admin`` against Azurite and the Graph emulator, and the
emulator's request log and the table's entities prove it wrote nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from graph_emulator.server import GraphEmulator
from shared.graph.directory import GuestAccount, SignInActivity
from shared.guests import GuestDue, GuestRecord, GuestState, TableGuestRegister, due_day
from shared.guests.planning import Step, plan
from shared.policy.lifecycle_rules import LifecycleRules, RemovalAction
from shared.settings import Settings
from shared.storage import build_table_client
from tests.test_admin import _signup_admin

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
RULES = LifecycleRules(
    review_every_days=180,
    review_grace_days=14,
    on_no_answer=RemovalAction.BLOCK_SIGN_IN_AND_DELETE,
    on_remove=RemovalAction.BLOCK_SIGN_IN,
    delete_after_days=30,
    unredeemed_reminder_days=(7, 14),
    unredeemed_expiry_days=30,
    inactive_days=90,
)


def _record(days_ago: int, **extra: Any) -> GuestRecord:
    return GuestRecord("u1", "s1", "partners", NOW - timedelta(days=days_ago), **extra)


def _account(state: str = "Accepted", last: datetime | None = NOW - timedelta(days=3)) -> GuestAccount:
    return GuestAccount(
        "u1", "x@fabrikam.com", NOW - timedelta(days=400), "Invitation", state, None, True, SignInActivity(last)
    )


@pytest.mark.parametrize(
    ("record", "account", "step", "reason"),
    [
        (_record(3), _account("PendingAcceptance"), Step.NOTHING, "no rule is due"),
        (_record(8), _account("PendingAcceptance"), Step.REMIND, "reminder 1 of 2"),
        (_record(8, reminders=1), _account("PendingAcceptance"), Step.NOTHING, "no rule is due"),
        (_record(15, reminders=1), _account("PendingAcceptance"), Step.REMIND, "reminder 2 of 2"),
        (_record(31, reminders=2), _account("PendingAcceptance"), Step.BLOCK, "unredeemedExpiryDays=30"),
        (_record(181), _account(), Step.REVIEW, "reviewEveryDays=180"),
        (_record(181, reviewed_at=NOW - timedelta(days=10)), _account(), Step.NOTHING, "no rule is due"),
        (_record(100), _account(last=None), Step.REVIEW, "inactiveDays=90: never signed in"),
        (_record(100), _account(last=NOW - timedelta(days=91)), Step.REVIEW, "inactiveDays=90: last signed in"),
        (_record(100), _account(last=NOW - timedelta(days=90, hours=12)), Step.NOTHING, "no rule is due"),  # lag
        (_record(20, state=GuestState.REVIEW_PENDING, due_at=NOW), _account(), Step.BLOCK, "onNoAnswer"),
        (
            _record(20, state=GuestState.REVIEW_PENDING, due_at=NOW + timedelta(days=1)),
            _account(),
            Step.NOTHING,
            "until",
        ),
        (
            _record(60, state=GuestState.BLOCKED, due_at=NOW - timedelta(hours=1)),
            _account(),
            Step.DELETE,
            "deleteAfter",
        ),
        (
            _record(60, state=GuestState.BLOCKED, due_at=NOW + timedelta(days=2)),
            _account(),
            Step.NOTHING,
            "deletion due",
        ),
        (_record(400, state=GuestState.DELETED), None, Step.NOTHING, "restorable"),
        (_record(400), None, Step.NOTHING, "not in the directory"),
    ],
)
def test_the_plan_for_each_situation(
    record: GuestRecord, account: GuestAccount | None, step: Step, reason: str
) -> None:
    found = plan(record, RULES, account, NOW)
    assert found.step is step and reason in found.reason, found


def test_no_rules_means_nothing_and_missing_sign_in_is_said_not_guessed() -> None:
    assert plan(_record(999), None, _account(), NOW).step is Step.NOTHING
    unavailable = plan(_record(100), RULES, _account(last=None), NOW, sign_in_available=False)
    assert unavailable.step is Step.NOTHING and "not available in this tenant" in unavailable.reason


async def test_dry_run_prints_each_registered_guest_and_writes_nothing(
    settings: Settings, emulator: GraphEmulator, app_env: dict[str, str], repo_root: Path, tmp_path: Path
) -> None:
    policy = {
        "profiles": [
            {
                "name": "partners",
                "domains": ["fabrikam.com"],
                "action": "approve",
                "groups": [],
                "lifecycle": {
                    "reviewEveryDays": 180,
                    "unredeemedReminderDays": [7, 14],
                    "unredeemedExpiryDays": 30,
                    "inactiveDays": 90,
                },
            },
            {"name": "plain", "domains": ["tailspin.com"], "action": "approve", "groups": []},
        ]
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy), encoding="utf-8")
    now = datetime.now(UTC)

    def guest(name: str, state: str) -> str:
        return str(emulator.add_user(mail=f"{name}@fabrikam.com", userType="Guest", externalUserState=state)["id"])

    unredeemed, due, plain, foreign = (
        guest("late", "PendingAcceptance"),
        guest("old", "Accepted"),
        guest("plain", "Accepted"),
        guest("foreign", "Accepted"),  # not made by the portal: never registered, never touched
    )
    table = build_table_client(settings)
    register = TableGuestRegister(table)
    await register.insert(GuestRecord(unredeemed, "s1", "partners", now - timedelta(days=8)))
    await register.insert(GuestRecord(due, "s2", "partners", now - timedelta(days=181), reminders=0))
    await register.insert(GuestRecord(plain, "s3", "plain", now - timedelta(days=500)))
    before = [(e["PartitionKey"], e["RowKey"], e.metadata["etag"]) async for e in table.list_entities()]
    emulator.config.premium_licence = False
    seen = len(emulator.requests)

    code, out, err = await _signup_admin(
        ["lifecycle", "--dry-run"], {**app_env, "SIGNUP_POLICY": str(tmp_path / "policy.json")}, repo_root
    )
    assert code == 0, err
    lines = out.splitlines()
    assert any(ln.startswith("remind") and unredeemed in ln and "reminder 1 of 2" in ln for ln in lines), out
    assert any(ln.startswith("review") and due in ln and "reviewEveryDays=180" in ln for ln in lines), out
    assert any(ln.startswith("nothing") and plain in ln and "no lifecycle rules" in ln for ln in lines), out
    assert foreign not in out and "@" not in out.replace("note:", "")  # no addresses printed
    assert "signInActivity is not available in this tenant" in out
    assert "lifecycle (dry run): 1 nothing, 1 remind, 1 review" in out
    made = emulator.requests[seen:]
    assert made and {r.method for r in made if r.path.startswith("/v1.0/")} == {"GET"}
    after = [(e["PartitionKey"], e["RowKey"], e.metadata["etag"]) async for e in table.list_entities()]
    assert after == before  # not one storage write
    await table.close()
    code, _, err = await _signup_admin(["lifecycle"], app_env, repo_root)
    assert code == 2 and "give --yes" in err  # not interactive: a live run needs --yes


async def test_a_live_run_sweeps_once_and_leaves_unregistered_guests_alone(
    settings: Settings, emulator: GraphEmulator, app_env: dict[str, str], repo_root: Path, tmp_path: Path
) -> None:
    policy = {
        "profiles": [
            {
                "name": "partners",
                "domains": ["fabrikam.com"],
                "action": "approve",
                "groups": [],
                "approvers": ["boss@contoso.com"],
                "lifecycle": {"reviewEveryDays": 180, "unredeemedExpiryDays": 30, "onRemove": "blockSignIn"},
            }
        ]
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy), encoding="utf-8")
    now = datetime.now(UTC)
    expired, due, foreign = (
        str(emulator.add_user(mail=f"{n}@fabrikam.com", userType="Guest", externalUserState=state)["id"])
        for n, state in (("late", "PendingAcceptance"), ("old", "Accepted"), ("foreign", "PendingAcceptance"))
    )
    table = build_table_client(settings)
    register = TableGuestRegister(table)
    for user_id, days in ((expired, 31), (due, 181)):
        await register.insert(GuestRecord(user_id, f"s-{days}", "partners", now - timedelta(days=days), due_at=now))
        await register.schedule(GuestDue(due_day(now), user_id))
    env = {**app_env, "SIGNUP_POLICY": str(tmp_path / "policy.json"), "MAIL_SENDER": "portal@contoso.com"}
    code, out, err = await _signup_admin(["lifecycle", "--yes"], env, repo_root)
    assert code == 0, err
    assert "lifecycle: 1 block, 1 review" in out and "digests: 1 sent" in out, out
    assert emulator.users[expired]["accountEnabled"] is False
    assert emulator.users[foreign].get("accountEnabled") is not False
    writes = [r for r in emulator.requests if r.method in ("PATCH", "DELETE") or r.path.endswith("sendMail")]
    assert {r.path for r in writes} == {f"/v1.0/users/{expired}", "/v1.0/users/portal@contoso.com/sendMail"}
    pending = await register.get(due)
    assert pending is not None and pending.state is GuestState.REVIEW_PENDING
    code, out, _ = await _signup_admin(["lifecycle", "--yes"], env, repo_root)
    assert code == 0 and "no guest was due" in out, out  # nothing twice
    code, out, _ = await _signup_admin(["lifecycle", "--permissions"], env, repo_root)
    assert code == 0 and json.loads(out) == ["User.Read.All", "User.ReadWrite.All"], out
    await table.close()
