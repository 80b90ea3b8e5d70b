"""The "you already have an account" mail (issue 18): the one thing a member's address learns.

A sign-up whose address belongs to a member of the tenant (or to one of the
tenant's own domains) ends, publicly, like any completed request: the anonymous
view says nothing about the directory. When ``MAIL_SENDER`` is set, the address
itself gets one short mail pointing at the sign-in page instead, so only the
mailbox's owner learns that the account exists. It carries no requester text,
and is in the language the requester used on the page (the pages' catalogues).
"""

from __future__ import annotations

from html import escape

from ..graph.directory import MailMessage
from ..lifecycle.models import Signup

SUBJECT = "You already have an account with %(organisation)s"
INTRO = (
    "Someone, perhaps you, asked to sign up as a guest of %(organisation)s with this address. "
    "This address already belongs to an account of %(organisation)s, so no guest account was made."
)
SIGN_IN = "Sign in with the account you have:"
NOT_YOU = "If it was not you, you can ignore this mail."


def account_mail(signup: Signup, organisation: str, signin_url: str) -> MailMessage:
    """The mail to ``signup``'s own address, in its language; every value HTML-escaped, nothing from the request's
    free text."""
    from ..pages.i18n import LANGUAGES, translations

    language = signup.language if signup.language in LANGUAGES else "en"
    _ = translations(language).gettext
    names = {"organisation": organisation}
    subject = " ".join((_(SUBJECT) % names).split())  # one line: no header injection
    link = escape(signin_url, quote=True)
    body = (
        f"<p>{escape(_(INTRO) % names)}</p>"
        f'<p>{escape(_(SIGN_IN))} <a href="{link}">{escape(signin_url)}</a></p>'
        f"<p>{escape(_(NOT_YOU))}</p>"
    )
    return MailMessage(to=(signup.email,), subject=subject, html_body=body)
