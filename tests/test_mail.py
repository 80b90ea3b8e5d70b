"""How mail quotes a requester: never in a subject; in a body escaped, cut short, or left out by the profile."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import pytest

from shared.approval.mail import NAME_LIMIT, TEXT_LIMIT, approver_mail
from shared.errors import ConfigurationError
from shared.lifecycle.models import Signup, Status
from shared.onboarding import render_invitation_mail
from shared.policy import parse_policy
from shared.policy.document import MailTemplate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PHISH = "Click https://evil.example/login <a href='https://evil.example'>now</a> to keep your account"


def _signup(**changes: object) -> Signup:
    values: dict[str, object] = {
        "id": "AAAAAAAAAAAAAAAAAAAAAA",
        "email": "sam@northwind.com",
        "display_name": PHISH,
        "company": "Northwind <script>x</script>",
        "justification": "y" * 5000,
        "status": Status.PENDING_APPROVAL,
        "created_at": NOW,
        "updated_at": NOW,
        "deadline": NOW,
        "answers": {"project": "<b>Falcon</b>"},
        "policy_profile": "northwind",
        **changes,
    }
    return Signup(**values)  # type: ignore[arg-type]


def test_the_approver_mail_subject_names_only_the_domain_and_the_body_is_escaped_and_short() -> None:
    mail = approver_mail(_signup(), ("a@contoso.com",), "https://portal.example/api/manage")
    assert mail.subject == "Guest sign-up waiting for approval (northwind.com)"
    assert "<a href='https://evil.example'>" not in mail.html_body and "<script>" not in mail.html_body
    assert "&lt;script&gt;" in mail.html_body and "&lt;b&gt;Falcon&lt;/b&gt;" in mail.html_body
    assert "y" * TEXT_LIMIT not in mail.html_body and "y" * (TEXT_LIMIT - 1) in mail.html_body
    name_cell = mail.html_body.split("<th align='left'>Name</th><td>", 1)[1].split("</td>", 1)[0]
    assert name_cell.endswith("…") and len(html.unescape(name_cell)) <= NAME_LIMIT


def test_the_profile_can_leave_the_requesters_text_out() -> None:
    mail = approver_mail(_signup(), ("a@contoso.com",), "https://p.example/api/manage", requester_text=False)
    for text in ("evil.example", "Northwind &lt;", "yyyy", "Falcon"):
        assert text not in mail.html_body
    assert "sam@northwind.com" in mail.html_body and "left out of mail" in mail.html_body


def test_the_organisations_mail_keeps_requester_text_out_of_the_subject() -> None:
    template = MailTemplate({"en": "Welcome to {organisation}"}, {"en": "<p>Hello {displayName}</p>{redeemUrl}"})
    signup = _signup(status=Status.INVITED)
    mail = render_invitation_mail(template, signup, "https://redeem.example/r", "Contoso", "")
    assert mail.subject == "Welcome to Contoso"
    assert "<a href=" not in mail.html_body and "&lt;a href=" in mail.html_body
    assert "keep your account" not in mail.html_body  # cut after NAME_LIMIT characters
    left_out = render_invitation_mail(template, signup, "https://redeem.example/r", "Contoso", "", False)
    assert "evil" not in left_out.html_body and left_out.html_body.startswith("<p>Hello </p>")


def test_a_policy_cannot_put_requester_text_into_a_subject() -> None:
    profile = {
        "name": "p",
        "domains": ["northwind.com"],
        "action": "approve",
        "groups": [],
        "mailTemplate": {"subject": {"en": "Hi {displayName}"}, "html": {"en": "{redeemUrl}"}},
    }
    with pytest.raises(ConfigurationError) as caught:
        parse_policy({"profiles": [profile]})
    assert "no requester text" in str(caught.value)
    quiet = {**profile, "mailTemplate": {"subject": {"en": "Hi"}, "html": {"en": "{redeemUrl}"}}}
    policy = parse_policy({"profiles": [{**quiet, "requesterTextInMail": False}]})
    assert policy.requester_text_in_mail("p") is False and policy.requester_text_in_mail(None) is True
    with pytest.raises(ConfigurationError):
        parse_policy({"profiles": [{**quiet, "requesterTextInMail": "no"}]})
