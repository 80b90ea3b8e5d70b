"""What the app asks of the directory (Microsoft Graph), as a small ``Protocol``.

``MsGraphDirectory`` (in ``graph_client``) is the real implementation; tests
use it against the Graph emulator, or a fake of this protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..settings import Settings


@dataclass(frozen=True)
class InvitationOptions:
    """Organisation-wide invitation options, taken from settings (never from the requester)."""

    redirect_url: str
    user_type: str | None = "Guest"  # None leaves invitedUserType out (a conversion, as Microsoft's document)
    send_message: bool = True
    message_language: str | None = None
    message_body: str | None = None
    cc_address: str | None = None
    sponsor_ids: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> InvitationOptions:
        """The options the settings configure."""
        return cls(
            redirect_url=settings.invite_redirect_url,
            user_type=settings.invite_user_type,
            send_message=settings.invite_send_message,
            message_language=settings.invite_message_language,
            message_body=settings.invite_message_body,
            cc_address=settings.invite_cc_address,
            sponsor_ids=settings.invite_sponsor_ids,
        )


@dataclass(frozen=True)
class Invitation:
    """One ``POST /invitations`` call."""

    email: str
    display_name: str | None
    options: InvitationOptions
    invited_user_id: str | None = None  # converts an existing internal user to B2B
    reset_redemption: bool = False
    # Graph's x-ms-throttle-priority: "high" when a person is waiting for it, "low" for bulk work.
    priority: str = "high"


@dataclass(frozen=True)
class InvitationResult:
    """What Graph answered to an invitation."""

    invitation_id: str | None
    invited_user_id: str | None
    status: str | None
    redeem_url: str | None = field(repr=False)
    request_id: str | None = None


@dataclass(frozen=True)
class DirectoryUser:
    """The few user properties the portal reads."""

    id: str
    user_type: str | None
    mail: str | None
    user_principal_name: str | None
    on_premises_user_principal_name: str | None = None
    external_user_state: str | None = None
    on_premises_sync_enabled: bool | None = None
    creation_type: str | None = None
    # (signInType, issuer) of each of ``identities``: a ``federated`` one is a B2B identity.
    identities: tuple[tuple[str, str], ...] = ()
    display_name: str | None = None


@dataclass(frozen=True)
class MailMessage:
    """One mail sent through Graph ``sendMail`` (HTML body)."""

    to: tuple[str, ...]
    subject: str
    html_body: str
    reply_to: tuple[str, ...] = ()


class Directory(Protocol):
    """The Graph calls the portal makes."""

    async def invite(
        self, invitation: Invitation, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> InvitationResult:
        """Send ``POST /invitations``; at most one HTTP request per call that Graph may act on.

        ``fence`` runs after every wait (the pacer, the shared budget, a 429's pause) and right before
        each POST; if it raises, nothing is sent and its exception propagates.
        """
        ...

    async def find_users_by_email(self, email: str) -> list[DirectoryUser]:
        """Users whose mail, otherMails, UPN or proxyAddresses hold ``email``."""
        ...

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        """One user by object id or user principal name, or None."""
        ...

    async def set_user_type(self, user_id: str, user_type: str, *, priority: str = "normal") -> None:
        """``PATCH /users/{id}`` with ``userType`` (a write, paced like the others)."""
        ...

    async def add_group_member(self, group_id: str, user_id: str) -> None:
        """Add a user to a group (already a member counts as success)."""
        ...

    async def send_mail(self, sender: str, message: MailMessage) -> None:
        """``POST /users/{sender}/sendMail`` (not saved to Sent Items); a lost answer is ambiguous."""
        ...

    async def verified_domains(self) -> frozenset[str]:
        """The tenant's verified domains, lower-case (cached for a few minutes)."""
        ...
