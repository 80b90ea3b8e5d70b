"""The guest lifecycle's mails: a reminder to a guest who never redeemed, and a reviewer's daily digest.

A reminder is the organisation's own mail with the redeem URL kept from the invitation: the profile's
invitation template when it has one (``shared.onboarding.render_invitation_mail``), else a short built-in
text. A digest lists how many guests wait for the reviewer's answer, per profile, and links the Reviews
tab; it names no guest's address (the tab shows them to a signed-in reviewer).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from html import escape

from ..graph.directory import MailMessage
from ..lifecycle.models import Signup
from ..onboarding import render_invitation_mail
from ..policy.document import MailTemplate


def reminder_mail(
    template: MailTemplate | None,
    signup: Signup,
    redeem_url: str,
    organisation: str,
    contact: str,
    *,
    requester_text: bool = True,
) -> MailMessage:
    """The reminder: the profile's template again, or a built-in text with the same redeem URL."""
    if template is not None:
        return render_invitation_mail(template, signup, redeem_url, organisation, contact, requester_text)
    link = escape(redeem_url, quote=True)
    body = (
        f"<p>You were invited as a guest of {escape(organisation)} and have not accepted the invitation yet.</p>"
        f'<p>Accept it here: <a href="{link}">{escape(redeem_url)}</a></p>'
        f"<p>Questions: {escape(contact)}</p>"
    )
    subject = " ".join(f"Reminder: your invitation to {organisation}".split())
    return MailMessage(to=(signup.email,), subject=subject, html_body=body)


def digest_mail(reviewer: str, profiles: Mapping[str, str | None], reviews_url: str) -> MailMessage:
    """One reviewer's digest: the guests (user id to profile) waiting for an answer, counted per profile."""
    counts = Counter(profile or "(default)" for profile in profiles.values())
    rows = "".join(f"<tr><th align='left'>{escape(p)}</th><td>{n}</td></tr>" for p, n in sorted(counts.items()))
    total = len(profiles)
    body = (
        f"<p>{total} guest{'s' if total != 1 else ''} you sponsor or approved "
        f"{'wait' if total != 1 else 'waits'} for your review: do they still need access?</p>"
        f"<table>{rows}</table>"
        f'<p>Keep or remove them here: <a href="{escape(reviews_url, quote=True)}">{escape(reviews_url)}</a></p>'
        "<p>Guests nobody answers for are handled by the profile's rules when the review period ends.</p>"
    )
    return MailMessage(to=(reviewer,), subject=f"Guest access review: {total} waiting", html_body=body)
