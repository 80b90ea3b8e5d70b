"""Intake over in-memory stores: policy decisions, rollback, one invitation per address per window, status views."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from shared.errors import SignupForbidden, StorageError
from shared.lifecycle.models import Status
from shared.lifecycle.store import DueEntry, address_key, bucket_of
from shared.lifecycle.worker import Outcome
from shared.policy import Action, FixedPolicy, Policy, parse_policy
from shared.policy.document import NO_POLICY
from shared.storage import environment_proxies
from tests.fakes import FakeDirectory, FakeQueue
from tests.lifecycle_kit import Kit
from tests.wiring import OPTIONS


async def test_accepted_signup_is_recorded_indexed_claimed_and_queued() -> None:
    """One sign-up: the record, a due-index entry at the end of its grace, the address claim, one message."""
    kit = Kit()
    sid = await kit.submit()
    record = kit.record(sid)
    assert record.status is Status.QUEUED
    assert record.due_at is not None and bucket_of(record.due_at) in kit.index.minutes
    assert kit.addresses.claims[address_key("sam@fabrikam.com")].signup_id == sid
    assert kit.queue.messages == [sid]
    assert (record.deadline - record.created_at).total_seconds() == kit.timers.deadline


async def test_intake_rolls_back_when_enqueue_fails() -> None:
    """If the message cannot be queued, the record is deleted again and the caller sees a StorageError."""
    kit = Kit(queue=FakeQueue(fail=True))
    with pytest.raises(StorageError):
        await kit.submit()
    assert kit.store.records == {}


async def test_a_claim_left_by_a_rolled_back_intake_is_taken_over() -> None:
    """The owner's record vanished (its intake rolled back): the next sign-up takes the address over."""
    kit = Kit(queue=FakeQueue(fail=True))
    with pytest.raises(StorageError):
        await kit.submit()
    kit.queue.fail = False
    sid = await kit.submit()
    assert kit.addresses.claims[address_key("sam@fabrikam.com")].signup_id == sid
    assert kit.queue.messages == [sid]


async def test_repeat_signup_while_pending_is_linked_and_follows_the_first() -> None:
    """A second sign-up of a pending address creates no invitation; its public status is the first one's."""
    kit = Kit()
    first = await kit.submit()
    second = await kit.submit("SAM@Fabrikam.com")  # same address, other case
    assert kit.record(second).status is Status.LINKED and kit.record(second).linked_to == first
    assert kit.queue.messages == [first]
    view = await kit.intake.public_status(second)
    assert view is not None and view["id"] == second and view["status"] == "queued"
    await kit.run_until_quiet()
    view = await kit.intake.public_status(second)
    assert view is not None and view["status"] == "invited"
    assert len(kit.directory.invitations) == 1


async def test_repeat_signup_within_the_window_creates_no_invitation() -> None:
    """Invited a minute ago: another sign-up is linked, not invited (no mail-bombing)."""
    kit = Kit()
    await kit.submit()
    await kit.run_until_quiet()
    kit.pass_time(60)
    again = await kit.submit()
    assert kit.record(again).status is Status.LINKED
    await kit.run_until_quiet()
    assert len(kit.directory.invitations) == 1 and kit.directory.mails("sam@fabrikam.com") == 1


async def test_after_the_window_a_new_signup_invites_again() -> None:
    """A guest who lost the mail signs up after the window: a new invitation (and mail) goes out."""
    kit = Kit()
    await kit.submit()
    await kit.run_until_quiet()
    kit.pass_time(kit.timers.repeat_window + 1)
    again = await kit.submit()
    assert kit.record(again).status is Status.QUEUED
    await kit.run_until_quiet()
    assert kit.record(again).status is Status.INVITED
    assert kit.directory.mails("sam@fabrikam.com") == 2


async def test_a_failed_owner_does_not_block_a_new_signup() -> None:
    """The earlier sign-up failed: a new one takes the address over and is queued."""
    from shared.errors import PermanentGraphError

    kit = Kit(directory=FakeDirectory([PermanentGraphError("no", code="BadRequest", status=400)]))
    first = await kit.submit()
    await kit.run_until_quiet()
    assert kit.record(first).status is Status.FAILED
    second = await kit.submit()
    assert kit.record(second).status is Status.QUEUED


async def test_concurrent_signups_of_one_address_give_one_invitation() -> None:
    """Twenty concurrent sign-ups of one address: one owner, nineteen linked, one invitation."""
    kit = Kit()
    ids = await asyncio.gather(*(kit.submit("sam@fabrikam.com") for _ in range(20)))
    statuses = [kit.record(i).status for i in ids]
    assert statuses.count(Status.QUEUED) == 1 and statuses.count(Status.LINKED) == 19
    await kit.run_until_quiet()
    assert len(kit.directory.invitations) == 1
    for sid in ids:
        view = await kit.intake.public_status(sid)
        assert view is not None and view["status"] == "invited"


async def test_public_status_never_leaks_private_fields() -> None:
    """The anonymous view has no email, user id or redeem URL, even once invited."""
    kit = Kit()
    sid = await kit.submit()
    await kit.run_until_quiet()
    view = await kit.intake.public_status(sid)
    assert view is not None and set(view) == {"id", "status", "createdAt", "updatedAt", "nextAttemptAt", "error"}
    text = repr(view)
    assert "sam@" not in text and "redeem" not in text and kit.record(sid).invited_user_id not in text


async def test_malformed_or_unknown_ids_are_none() -> None:
    """Ids of the wrong shape are not looked up; unknown ones are None."""
    kit = Kit()
    assert await kit.intake.public_status("../etc") is None
    assert await kit.intake.public_status("A" * 22) is None


POLICY = parse_policy(
    {
        "defaultAction": "review",
        "blockedDomains": ["gmail.com"],
        "profiles": [
            {
                "name": "fabrikam",
                "domains": ["fabrikam.com"],
                "action": "approve",
                "groups": [],
                "redirectUrl": "https://fabrikam.contoso.com/welcome",
                "messageLanguage": "fr-FR",
                "sponsors": ["6d1b7d5e-3c5f-4c5b-9a7a-0f0e1d2c3b4a"],
            },
            {"name": "northwind", "domains": ["*.northwind.com"], "action": "review", "groups": []},
        ],
    }
)


@pytest.mark.parametrize(
    ("policy", "email"),
    [
        pytest.param(POLICY, "sam@gmail.com", id="blocked"),
        pytest.param(Policy(default_action=Action.DENY), "sam@contoso.com", id="unknown-under-deny"),
    ],
)
async def test_a_refused_domain_is_recorded_denied_and_raises_forbidden(policy: Policy, email: str) -> None:
    """Denied: one record with status denied; no due-index entry, no address claim, no message; 403 error."""
    kit = Kit(policy=policy)
    with pytest.raises(SignupForbidden) as info:
        await kit.submit(email)
    record = kit.record(info.value.signup_id)
    assert record.status is Status.DENIED and record.policy_action == "deny"
    assert kit.index.minutes == {} and kit.addresses.claims == {} and kit.queue.messages == []
    assert "gmail" not in info.value.detail and "polic" not in info.value.detail.lower()
    view = await kit.intake.public_status(record.id)
    assert view is not None and view["status"] == "denied" and view["error"] is None


@pytest.mark.parametrize(
    ("policy", "email", "profile"),
    [
        pytest.param(POLICY, "sam@eu.northwind.com", "northwind", id="review-profile"),
        pytest.param(POLICY, "sam@contoso.com", None, id="default-review"),
        pytest.param(NO_POLICY, "sam@fabrikam.com", None, id="no-policy"),
    ],
)
async def test_a_signup_for_review_waits_unqueued(policy: Policy, email: str, profile: str | None) -> None:
    """Review: recorded pending_approval with its profile; no claim, no message (nobody to mail), indexed only
    for its expiry; the worker leaves it alone."""
    kit = Kit(policy=policy)
    sid = await kit.submit(email)
    record = kit.record(sid)
    assert (record.status, record.policy_action, record.policy_profile) == (Status.PENDING_APPROVAL, "review", profile)
    assert record.deadline == record.created_at + timedelta(seconds=kit.pending_expiry)
    assert kit.index.entries() == [DueEntry(bucket_of(record.deadline), sid)]
    # One open review per address: the pending request holds the claim (a repeat links to it).
    assert [c.signup_id for c in kit.addresses.claims.values()] == [sid] and kit.queue.messages == []
    assert await kit.worker.process(sid) is Outcome.NOT_ADMITTED
    assert await kit.worker.finalise_poisoned(sid) is Outcome.NOT_ADMITTED
    assert kit.record(sid).status is Status.PENDING_APPROVAL and kit.directory.invitations == []
    view = await kit.intake.public_status(sid)
    assert view is not None and view["status"] == "pending_approval" and view["error"] is None


async def test_an_approved_signup_is_queued_and_invited_with_its_profiles_options() -> None:
    """Approve: queued as before, with the profile named on the record; the worker uses its redirect and sponsors."""
    kit = Kit(policy=POLICY)
    sid = await kit.submit("sam@fabrikam.com")
    record = kit.record(sid)
    assert (record.status, record.policy_action, record.policy_profile) == (Status.QUEUED, "approve", "fabrikam")
    assert kit.queue.messages == [sid]
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED
    [invitation] = kit.directory.invitations
    assert invitation.options.redirect_url == "https://fabrikam.contoso.com/welcome"
    assert invitation.options.message_language == "fr-FR" and invitation.options.user_type == "Guest"
    assert invitation.options.sponsor_ids == ("6d1b7d5e-3c5f-4c5b-9a7a-0f0e1d2c3b4a",)


async def test_a_profile_gone_from_the_policy_falls_back_to_the_settings_options() -> None:
    """The policy changed after intake: the decision stands and the settings' options are used."""
    kit = Kit(policy=POLICY)
    sid = await kit.submit("sam@fabrikam.com")
    kit.worker._policy = FixedPolicy(Policy(default_action=Action.APPROVE))
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED
    assert kit.directory.invitations[0].options == OPTIONS


async def test_intake_writes_one_record_and_one_message_and_nothing_else() -> None:
    """The HTTP trigger's durable work (issue 17): one insert (received) and one enqueue; the claim, due
    entry, audit rows and denial lookup wait for admission behind the queue."""
    kit = Kit()
    sid = await kit.submit(admit=False)
    assert [(w.id, w.status) for w in kit.store.writes] == [(sid, Status.RECEIVED)]
    assert kit.queue.sent == [(sid, 0.0)]
    assert kit.index.entries() == [] and kit.addresses.claims == {} and await kit.history(sid) == []
    assert sid.startswith(kit.clock.now.strftime("%Y%m%d%H%M"))  # the id names its minute: its own due entry
    assert await kit.deliver_due() == [Outcome.INVITED]
    assert await kit.history(sid) == ["received", "policy", "invited"]


async def test_an_id_naming_an_old_minute_gets_its_own_due_entry() -> None:
    """A form token issued long before its post names a minute the sweeper may have read: intake adds a due
    entry for it (the usual post, whose id names the current minute, pays nothing), and a lost message is
    still found."""
    from shared.lifecycle.intake import Intake
    from shared.lifecycle.models import new_signup_id
    from tests.lifecycle_kit import form

    kit = Kit()
    await kit.sweeper.sweep()
    intake = Intake(kit.store, kit.queue, kit.timers, clock=kit.clock, policy=FixedPolicy(kit.policy), index=kit.index)
    old = new_signup_id(kit.clock.now - timedelta(hours=3))
    await intake.submit(form(), signup_id=old)
    fresh = (await intake.submit(form("kim@fabrikam.com"))).id
    assert [e.signup_id for e in kit.index.entries()] == [old]
    kit.queue.sent.clear()  # both messages are lost
    kit.pass_time(kit.timers.queued_grace + 120)
    report = await kit.sweeper.sweep()
    assert {old, fresh} <= set(report.requeued)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"NO_PROXY": "*"}, False),  # a bypass list alone names no proxy
        ({"HTTPS_PROXY": "http://proxy.contoso.com:3128"}, True),
        ({"http_proxy": "http://proxy.contoso.com:3128"}, True),
        ({"HTTPS_PROXY": ""}, False),
    ],
)
def test_the_storage_clients_keep_environment_proxies_only_where_there_are_any(
    environ: dict[str, str], expected: bool, tmp_path: Path
) -> None:
    """Clients skip aiohttp's per-request proxy and netrc lookups only when those could find nothing."""
    assert environment_proxies({**environ, "NETRC": str(tmp_path / "none")}) is expected
    (tmp_path / "netrc").write_text("machine proxy.contoso.com login a password b\n")
    assert environment_proxies({**environ, "NETRC": str(tmp_path / "netrc")}) is True


def test_built_storage_clients_trust_the_environment_as_it_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``use_env_settings`` reaches the SDKs' aiohttp transports: off without proxies, on with one."""
    from azure.core.pipeline.transport._aiohttp import AioHttpTransport

    from shared.settings import load_settings
    from shared.storage import build_queue_client, build_table_client

    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "INVITE_REDIRECT_URL": "https://x"})
    for name in [k for k in os.environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))

    def transports() -> list[bool]:
        """The settings of the transports the two clients built (found among the objects alive)."""
        before = {id(o) for o in gc.get_objects() if isinstance(o, AioHttpTransport)}
        clients = [build_table_client(settings), build_queue_client(settings)]
        found = [
            o._use_env_settings for o in gc.get_objects() if isinstance(o, AioHttpTransport) and id(o) not in before
        ]
        for client in clients:
            asyncio.run(client.close())
        return found

    assert transports() == [False, False]
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.contoso.com:3128")
    assert transports() == [True, True]


def test_the_start_up_heap_is_left_out_of_later_collections() -> None:
    """Once the services are built, what exists (modules, clients) is frozen: a full collection later walks
    only what came after, not the ~90,000 long-lived objects whose walk stalled every invocation in flight."""
    code = (
        "import gc, os\n"
        "os.environ.update(AzureWebJobsStorage='UseDevelopmentStorage=true', INVITE_REDIRECT_URL='https://x')\n"
        "import function_app\n"
        "from shared.services import get_services\n"
        "get_services()\n"
        "print(gc.get_freeze_count(), len(gc.get_objects()))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobs", "INVITE_", "SIGNUP_"))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    frozen, tracked = map(int, done.stdout.split())
    assert frozen > 20_000
    assert tracked < frozen // 10
