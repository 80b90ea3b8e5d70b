"""The mail that tells a profile's approvers a request waits for them."""

from __future__ import annotations

from html import escape

from ..graph.directory import MailMessage
from ..lifecycle.models import Signup


def approver_mail(signup: Signup, approvers: tuple[str, ...], manage_url: str) -> MailMessage:
    """Who asked, from which domain, why, and where to decide (every value HTML-escaped)."""
    rows = [
        ("Name", signup.display_name),
        ("Address", signup.email),
        ("Domain", signup.domain),
        ("Company", signup.company or "-"),
        ("Justification", signup.justification or "-"),
        ("Policy profile", signup.policy_profile or "(none: the default action)"),
    ]
    table = "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    link = f"{manage_url.rstrip('/')}?id={escape(signup.id)}"
    body = (
        "<p>A guest sign-up waits for your decision.</p>"
        f"<table>{table}</table>"
        f'<p>Decide here: <a href="{escape(link, quote=True)}">{escape(link)}</a></p>'
        "<p>Requests nobody decides expire.</p>"
    )
    return MailMessage(
        to=approvers,
        subject=f"Guest sign-up waiting for approval: {signup.display_name} ({signup.domain})",
        html_body=body,
    )
