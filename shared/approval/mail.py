"""The mail that tells a profile's approvers a request waits for them, and how any mail quotes a requester.

A requester's own text (display name, company, justification, answers) is
theirs, not the organisation's, yet the mail goes from the organisation's
mailbox. So it never goes into a subject; in a body it is HTML-escaped, cut to
a length, and left out altogether when the profile says so
(``requesterTextInMail: false``).
"""

from __future__ import annotations

from html import escape
from typing import Final

from ..graph.directory import MailMessage
from ..lifecycle.models import Signup

NAME_LIMIT: Final = 80
COMPANY_LIMIT: Final = 120
TEXT_LIMIT: Final = 500
LEFT_OUT: Final = "(left out of mail by the policy; see the approver's page)"


def shortened(value: str | None, limit: int) -> str:
    """A requester's text on one line of at most ``limit`` characters (not yet escaped)."""
    text = " ".join((value or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def quoted(value: str | None, limit: int) -> str:
    """A requester's text for a mail body: ``shortened`` and HTML-escaped."""
    return escape(shortened(value, limit), quote=True)


def approver_mail(
    signup: Signup, approvers: tuple[str, ...], manage_url: str, *, requester_text: bool = True
) -> MailMessage:
    """Who asked, from which domain, why, and where to decide; the subject names only the domain."""
    free = [
        ("Name", quoted(signup.display_name, NAME_LIMIT)),
        ("Company", quoted(signup.company, COMPANY_LIMIT) or "-"),
        ("Justification", quoted(signup.justification, TEXT_LIMIT) or "-"),
        *((f"Answer: {escape(q)}", quoted(a, TEXT_LIMIT)) for q, a in sorted(signup.answers.items())),
    ]
    rows = [
        ("Address", escape(signup.email)),
        ("Domain", escape(signup.domain)),
        *(free if requester_text else [("Requester's text", escape(LEFT_OUT))]),
        ("Policy profile", escape(signup.policy_profile or "(none: the default action)")),
    ]
    table = "".join(f"<tr><th align='left'>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    link = f"{manage_url.rstrip('/')}?id={escape(signup.id)}"
    body = (
        "<p>A guest sign-up waits for your decision.</p>"
        f"<table>{table}</table>"
        f'<p>Decide here: <a href="{escape(link, quote=True)}">{escape(link)}</a></p>'
        "<p>Requests nobody decides expire.</p>"
    )
    return MailMessage(
        to=approvers,
        subject=f"Guest sign-up waiting for approval ({signup.domain})",
        html_body=body,
    )
