"""Approval over the lifecycle kit: decisions, races, denial memory, expiry, approver mail, groups, the
organisation's own mail, and the audit trail (in-memory stores, the real state machines)."""

from __future__ import annotations

import asyncio

import pytest

from shared.access import KEY_CALLER, Caller
from shared.errors import (
    AmbiguousGraphError,
    DecisionConflict,
    PermanentGraphError,
    TransientGraphError,
    UnknownSignup,
)
from shared.lifecycle.models import Status, Step
from shared.lifecycle.worker import Outcome
from shared.policy import parse_policy
from tests.lifecycle_kit import APPROVER, Kit

GROUP_A = "3f7c2d1e-9a4b-4c8d-b1e2-5a6f7c8d9e01"
GROUP_B = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
TEMPLATE = {
    "subject": {"en": "Welcome to {organisation}", "de": "Willkommen bei {organisation}"},
    "html": {
        "en": "<p>Hello {displayName}, <a href='{redeemUrl}'>accept</a>. Questions: {contact}</p>",
        "de": "<p>Hallo {displayName}, <a href='{redeemUrl}'>annehmen</a>.</p>",
    },
}
POLICY = parse_policy(
    {
        "defaultAction": "review",
        "defaultApprovers": ["owners@contoso.com"],
        "profiles": [
            {
                "name": "northwind",
                "domains": ["northwind.com"],
                "action": "review",
                "groups": [GROUP_A],
                "approvers": ["partner-admins@contoso.com", "second@contoso.com"],
            },
            {
                "name": "fabrikam",
                "domains": ["fabrikam.com"],
                "action": "approve",
                "groups": [GROUP_A, GROUP_B],
                "mailTemplate": TEMPLATE,
            },
        ],
    }
)


def review_kit(**kwargs: object) -> Kit:
    return Kit(policy=POLICY, **kwargs)  # type: ignore[arg-type]


async def test_a_pending_request_mails_its_approvers_once() -> None:
    """Pending: the profile's approvers get one mail saying who asked, from where, why, and where to decide."""
    kit = review_kit()
    sid = await kit.submit("sam@northwind.com")
    assert kit.record(sid).approver_mail is Step.DUE and kit.queue.messages == [sid]
    assert await kit.deliver_due() == [Outcome.FOLLOWED_UP]
    [(sender, mail)] = kit.directory.sent_mails
    assert sender == "portal@contoso.com"
    assert mail.to == ("partner-admins@contoso.com", "second@contoso.com")
    assert "sam@northwind.com" in mail.html_body and "northwind.com" in mail.html_body
    assert f"https://portal.example/api/manage?id={sid}" in mail.html_body
    assert kit.record(sid).approver_mail is Step.DONE
    # A duplicate delivery sends nothing more.
    await kit.queue.enqueue(sid)
    await kit.deliver_due()
    assert len(kit.directory.sent_mails) == 1
    assert await kit.history(sid) == ["received", "policy", "approver_mail_sent"]


async def test_unmatched_requests_go_to_the_default_approvers_and_html_is_escaped() -> None:
    kit = review_kit()
    sid = (await kit.intake.submit(form_with("x@unknown.example", "<b>Eve</b>"))).id
    await kit.deliver_due()
    [(_, mail)] = kit.directory.sent_mails
    assert mail.to == ("owners@contoso.com",)
    assert "<b>Eve</b>" not in mail.html_body and "&lt;b&gt;Eve&lt;/b&gt;" in mail.html_body
    assert kit.record(sid).policy_profile is None


def form_with(email: str, name: str):  # type: ignore[no-untyped-def]
    from shared.lifecycle.validation import SignupForm

    return SignupForm(email, name, "Co", "Because")


async def test_an_approver_mail_whose_answer_is_lost_is_never_sent_again() -> None:
    kit = review_kit()
    kit.directory.mail_outcomes = [(True, AmbiguousGraphError("timeout", code="Timeout"))]  # type: ignore[list-item]
    sid = await kit.submit("sam@northwind.com")
    await kit.deliver_due()
    assert kit.record(sid).approver_mail is Step.UNKNOWN
    kit.pass_time(kit.timers.queued_grace * 4)
    await kit.sweeper.sweep()
    await kit.run_until_quiet()
    assert len(kit.directory.sent_mails) == 1
    assert "approver_mail_unknown" in await kit.history(sid)


async def test_a_refused_connection_is_retried_on_the_schedule() -> None:
    kit = review_kit()
    kit.directory.mail_outcomes = [TransientGraphError("down", code="Unreachable")]
    sid = await kit.submit("sam@northwind.com")
    await kit.deliver_due()
    assert kit.record(sid).approver_mail is Step.DUE and kit.directory.sent_mails == []
    await kit.run_until_quiet()
    assert kit.record(sid).approver_mail is Step.DONE and len(kit.directory.sent_mails) == 1


async def test_approval_admits_the_request_and_it_is_invited() -> None:
    kit = review_kit()
    sid = await kit.submit("sam@northwind.com")
    await kit.deliver_due()
    kit.pass_time(60)
    view = await kit.approvals.approve(sid, APPROVER, "Known partner")
    assert view["result"] == "decided" and view["status"] == "queued"
    assert view["decision"] == {
        "outcome": "approved",
        "by": "approver@contoso.com",
        "at": view["decision"]["at"],
        "reason": "Known partner",
    }
    await kit.run_until_quiet()
    record = kit.record(sid)
    assert record.status is Status.INVITED and record.groups == {GROUP_A: "done"}
    assert (GROUP_A, record.invited_user_id) in kit.directory.members
    detail = await kit.approvals.detail(sid)
    assert [h["event"] for h in detail["history"]] == [
        "received",
        "policy",
        "approver_mail_sent",
        "approved",
        "invited",
        "group_added",
    ]
    assert detail["history"][0]["detail"]["email"] == "sam@northwind.com"
    # The anonymous view never shows the approver's words.
    public = await kit.intake.public_status(sid)
    assert public is not None and "Known partner" not in str(public)


async def test_two_approvers_racing_get_one_outcome_and_the_loser_is_told() -> None:
    kit = review_kit()
    sid = await kit.submit("sam@northwind.com")
    other = Caller("principal", "other@contoso.com")
    results = await asyncio.gather(
        kit.approvals.approve(sid, APPROVER, None),
        kit.approvals.deny(sid, other, "Not a partner"),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, DecisionConflict)]
    assert len(wins) == 1 and len(losses) == 1
    record = kit.record(sid)
    assert record.status in {Status.QUEUED, Status.DENIED}
    assert "no longer pending" in losses[0].detail
    # Asking again for the outcome that won is idempotent.
    again = await (
        kit.approvals.approve(sid, APPROVER, None)
        if record.status is Status.QUEUED
        else kit.approvals.deny(sid, other, "Not a partner")
    )
    assert again["result"] == "already_decided"
    events = await kit.history(sid)
    assert events.count("approved") + events.count("denied") == 1


async def test_a_denied_address_is_refused_without_review_until_the_memory_lapses() -> None:
    """A remembered denial ends the repeat denied without a new review or mail, yet its requester sees what any
    request under review shows (then expired), so the answer reveals nothing about an approver's decision."""
    kit = review_kit()
    sid = await kit.submit("sam@northwind.com")
    await kit.deliver_due()
    view = await kit.approvals.deny(sid, KEY_CALLER, "Unknown company")
    assert view["status"] == "denied" and view["decision"]["by"] == "function-key"
    mails = len(kit.directory.sent_mails)
    repeat = await kit.submit("SAM@northwind.com")
    assert kit.record(repeat).status is Status.DENIED and kit.record(repeat).policy_reason == "denied-before"
    public = await kit.intake.public_status(repeat)
    assert public is not None and public["status"] == "pending_approval" and public["error"] is None
    await kit.deliver_due()
    assert len(kit.directory.sent_mails) == mails  # no approvers' mail for it
    kit.pass_time(kit.pending_expiry + 1)
    public = await kit.intake.public_status(repeat)
    assert public is not None and public["status"] == "expired"
    kit.pass_time(kit.denial_memory + 1)
    again = await kit.submit("sam@northwind.com")
    assert kit.record(again).status is Status.PENDING_APPROVAL


async def test_a_request_nobody_decides_expires() -> None:
    kit = review_kit()
    sid = await kit.submit("sam@northwind.com")
    await kit.deliver_due()
    await kit.sweeper.sweep()  # the sweeper's cursor starts here
    kit.pass_time(kit.pending_expiry + 120)
    report = await kit.sweeper.sweep()
    assert report.expired == [sid] and kit.record(sid).status is Status.EXPIRED
    with pytest.raises(DecisionConflict):
        await kit.approvals.approve(sid, APPROVER, None)
    assert (await kit.history(sid))[-1] == "expired"


async def test_unknown_ids_are_404() -> None:
    kit = review_kit()
    with pytest.raises(UnknownSignup):
        await kit.approvals.approve("x" * 22, APPROVER, None)
    with pytest.raises(UnknownSignup):
        await kit.approvals.detail("../etc")


async def test_groups_survive_faults_and_the_organisations_mail_goes_once_in_the_request_language() -> None:
    kit = review_kit()
    kit.directory.group_outcomes = [
        TransientGraphError("throttled", code="TooManyRequests", retry_after=20),
        None,
        AmbiguousGraphError("timeout", code="Timeout"),
        None,
    ]
    submitted = await kit.intake.submit(form_in("ana@fabrikam.com", "de"))
    await kit.run_until_quiet()
    record = kit.record(submitted.id)
    assert record.status is Status.INVITED and record.groups == {GROUP_A: "done", GROUP_B: "done"}
    assert kit.directory.invitations[0].options.send_message is False  # the organisation mails instead
    [(_, mail)] = kit.directory.sent_mails
    assert mail.to == ("ana@fabrikam.com",) and mail.subject == "Willkommen bei Contoso"
    assert record.redeem_url is not None and record.redeem_url in mail.html_body
    assert record.org_mail is Step.DONE and record.followup_attempts == 2
    assert (await kit.history(submitted.id)).count("mail_sent") == 1


def form_in(email: str, language: str):  # type: ignore[no-untyped-def]
    from shared.lifecycle.validation import SignupForm

    return SignupForm(email, "Ana", "Fabrikam", None, language)


async def test_a_group_that_refuses_is_recorded_and_the_rest_goes_on() -> None:
    kit = review_kit()
    kit.directory.group_outcomes = [PermanentGraphError("no such group", code="Request_ResourceNotFound"), None]
    sid = await kit.submit("ana@fabrikam.com")
    await kit.run_until_quiet()
    record = kit.record(sid)
    assert record.groups == {GROUP_A: "failed:Request_ResourceNotFound", GROUP_B: "done"}
    assert record.org_mail is Step.DONE
    events = await kit.history(sid)
    assert "group_failed" in events and "group_added" in events


async def test_a_worker_that_dies_while_mailing_never_mails_twice() -> None:
    """A delivery that crashed after marking the mail 'sending' leaves it unknown, not sent again."""
    kit = review_kit()
    sid = await kit.submit("ana@fabrikam.com")
    record = kit.record(sid)
    # Simulate: invited, groups done, the mail marked sending by a worker that then died.
    await kit.store.replace(
        record.evolve(
            status=Status.INVITED,
            invited_user_id="u1",
            redeem_url="https://login.example/redeem/1",
            groups={GROUP_A: "done", GROUP_B: "done"},
            org_mail=Step.SENDING,
            due_at=kit.clock(),
            updated_at=kit.clock(),  # the kit's clock, not the wall clock (the lease is measured from it)
        )
    )
    kit.queue.sent.clear()
    await kit.queue.enqueue(sid)
    await kit.deliver_due()
    assert kit.record(sid).org_mail is Step.SENDING  # its worker may still be at it: wait for the lease
    kit.pass_time(kit.timers.lease + 1)
    await kit.run_until_quiet()
    assert kit.record(sid).org_mail is Step.UNKNOWN and kit.directory.sent_mails == []


async def test_an_address_in_the_tenants_own_domain_is_never_invited() -> None:
    kit = Kit()
    kit.directory.domains = frozenset({"fabrikam.com"})
    sid = await kit.submit("sam@fabrikam.com")
    await kit.run_until_quiet()
    record = kit.record(sid)
    assert record.status is Status.FAILED and record.error_code == "TenantDomain"
    assert kit.directory.invitations == []


async def test_a_follower_revived_after_its_own_expiry_mails_nobody() -> None:
    """Two requests for one address under review: the second follows the first. Nobody decides; the first
    expires, and the follower, revived past its own expiry, is expired too without a second approvers' mail."""
    kit = review_kit()
    await kit.sweeper.sweep()
    first = await kit.submit("sam@northwind.com")
    second = await kit.submit("sam@northwind.com")
    await kit.deliver_due()
    assert kit.record(second).status is Status.LINKED and len(kit.directory.sent_mails) == 1
    for _ in range(10):
        kit.pass_time(kit.pending_expiry / 4)
        await kit.sweeper.sweep()
        await kit.deliver_due()
    assert kit.record(first).status is Status.EXPIRED and kit.record(second).status is Status.EXPIRED
    assert len(kit.directory.sent_mails) == 1
