"""The organisation's own mail to a converted user, through the onboarding code's template rendering.

A bulk run that chose ``--mail organisation`` converts with
``sendInvitationMessage: false`` and then sends the profile's ``mailTemplate``
(the same rendering as a sign-up's organisation mail) from ``MAIL_SENDER``
through Graph ``sendMail``, carrying the ``inviteRedeemUrl`` of the answer.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..graph.directory import Directory, DirectoryUser
from ..lifecycle.models import Signup, Status
from ..onboarding import render_invitation_mail
from ..policy.document import MailTemplate


class OrganisationMail:
    """Sends one profile's template to converted users (``send_mail`` errors are raised as classified)."""

    def __init__(
        self,
        directory: Directory,
        sender: str,
        template: MailTemplate,
        *,
        organisation: str,
        contact: str,
        language: str | None = None,
    ) -> None:
        self._directory = directory
        self._sender = sender
        self._template = template
        self._organisation = organisation
        self._contact = contact
        self._language = language

    async def send(self, user: DirectoryUser, redeem_url: str) -> None:
        """One mail to ``user.mail``; a lost answer is ``AmbiguousGraphError`` (never sent again)."""
        assert user.mail
        now = datetime.now(UTC)
        # render_invitation_mail reads a sign-up's address, name and language; a conversion has no record.
        view = Signup(
            id="conversion",
            email=user.mail,
            display_name=user.display_name or user.user_principal_name or user.mail,
            company=None,
            justification=None,
            status=Status.INVITED,
            created_at=now,
            updated_at=now,
            deadline=now,
            language=self._language,
        )
        message = render_invitation_mail(self._template, view, redeem_url, self._organisation, self._contact)
        await self._directory.send_mail(self._sender, message)
