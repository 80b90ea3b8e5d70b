"""What the app asks of the directory (Microsoft Graph), as a small ``Protocol``.

``MsGraphDirectory`` (in ``graph_client``) is the real implementation; tests
use it against the Graph emulator, or a fake of this protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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


# Graph keeps a deleted user restorable for 30 days, then deletes it permanently.
DELETED_ITEM_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class SignInActivity:
    """A user's ``signInActivity``; ``None`` where Graph says never (absent, or ``0001-01-01``)."""

    last_sign_in: datetime | None = None  # interactive attempts, failed ones included
    last_non_interactive_sign_in: datetime | None = None
    last_successful_sign_in: datetime | None = None  # recorded since 2023-12-01 only

    @property
    def latest(self) -> datetime | None:
        """The most recent of the three, or None when the user never signed in (as far as Graph knows)."""
        moments = [m for m in (self.last_sign_in, self.last_non_interactive_sign_in, self.last_successful_sign_in) if m]
        return max(moments, default=None)


@dataclass(frozen=True)
class GuestAccount:
    """One guest as the review query reads it (``GET /users?$filter=userType eq 'Guest'``)."""

    id: str
    mail: str | None
    created: datetime | None
    creation_type: str | None
    external_user_state: str | None  # PendingAcceptance or Accepted for invited users
    external_user_state_changed: datetime | None
    account_enabled: bool | None
    # None when it was not asked for; SignInActivity() when asked and the guest never signed in.
    sign_in: SignInActivity | None = None


@dataclass(frozen=True)
class Membership:
    """One direct membership from ``GET /users/{id}/memberOf`` (a group, directory role or unit)."""

    id: str
    odata_type: str | None  # "#microsoft.graph.group", "#microsoft.graph.directoryRole", ...

    @property
    def is_group(self) -> bool:
        return self.odata_type == "#microsoft.graph.group"


@dataclass(frozen=True)
class DeletedUser:
    """A user in the directory's deleted items."""

    id: str
    deleted: datetime | None
    user_type: str | None = None

    @property
    def restorable_until(self) -> datetime | None:
        """When Graph purges it (30 days after deletion); restore before then."""
        return self.deleted + DELETED_ITEM_RETENTION if self.deleted else None


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

    # The guest lifecycle's calls. Writes default to priority "low" (bulk work, paced in the shared budget).
    async def set_sign_in_enabled(self, user_id: str, enabled: bool, *, priority: str = "low") -> None:
        """``PATCH /users/{id}`` with ``accountEnabled``: false blocks a guest's sign-in, true restores it."""
        ...

    async def remove_group_member(self, group_id: str, user_id: str, *, priority: str = "low") -> bool:
        """``DELETE /groups/{gid}/members/{uid}/$ref``; False when the user was not a member (404)."""
        ...

    async def delete_user(self, user_id: str, *, priority: str = "low") -> bool:
        """``DELETE /users/{id}`` (to deleted items for 30 days); False when there was no such user (404)."""
        ...

    async def restore_deleted_user(self, user_id: str, *, priority: str = "low") -> DirectoryUser:
        """``POST /directory/deletedItems/{id}/restore``: the user comes back with its groups."""
        ...

    async def get_deleted_user(self, user_id: str) -> DeletedUser | None:
        """``GET /directory/deletedItems/{id}``, or None when it is not (or no longer) there."""
        ...

    async def get_guest(self, user_id: str, *, sign_in_activity: bool = False) -> GuestAccount | None:
        """``GET /users/{id}`` with the lifecycle's fields (``accountEnabled``, ``externalUserState``), or None.

        With ``sign_in_activity`` a tenant without the licence raises ``FeatureUnavailable``.
        """
        ...

    def guest_pages(self, *, sign_in_activity: bool = True) -> AsyncIterator[list[GuestAccount]]:
        """Every guest, one page at a time (following ``@odata.nextLink``).

        With ``sign_in_activity`` the query selects ``signInActivity``; a tenant without the licence
        raises ``FeatureUnavailable`` (ask again without it for the rest).
        """
        ...

    async def member_of(self, user_id: str) -> list[Membership]:
        """The user's direct memberships (``GET /users/{id}/memberOf``, every page)."""
        ...
