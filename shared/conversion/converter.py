"""One conversion: read the user, check it, invite it with ``invitedUser.id``, optionally make it a Guest.

The invitation carries only what Microsoft's document sends: the address, the
redirect, ``sendInvitationMessage`` (and the mail's language), ``invitedUser.id``.
No ``invitedUserType`` (a conversion does not change ``userType``), no sign-up
message body, cc or sponsors. The mail is chosen on every run (``MailChoice``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from ..errors import PermanentGraphError, ValidationFailed
from ..graph.directory import Directory, DirectoryUser, Invitation, InvitationOptions, InvitationResult
from .checks import Verdict, precheck

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_UPN = re.compile(r"^[^@\s/\\?#%]{1,113}@[A-Za-z0-9.-]{1,255}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
REQUEST_KEYS: Final = frozenset(
    {"user", "email", "sendInvitationMessage", "messageLanguage", "redirectUrl", "setGuestUserType", "mailProfile"}
)


class MailChoice(StrEnum):
    """Who mails the converted user: Microsoft, the organisation (a profile's template), or nobody."""

    MICROSOFT = "microsoft"
    ORGANISATION = "organisation"
    NONE = "none"


def is_user_reference(value: str) -> bool:
    """An object id (GUID) or a user principal name."""
    return bool(_GUID.match(value) or _UPN.match(value))


@dataclass(frozen=True)
class ConversionOptions:
    """How to convert: Microsoft's mail or not, its language, the redirect, and userType afterwards."""

    send_message: bool = False
    message_language: str | None = None
    redirect_url: str | None = None
    set_guest_user_type: bool = False
    mail_profile: str | None = None  # a policy profile whose mailTemplate the organisation's own mail uses

    @property
    def mail(self) -> MailChoice:
        """The mail choice these options make."""
        if self.mail_profile is not None:
            return MailChoice.ORGANISATION
        return MailChoice.MICROSOFT if self.send_message else MailChoice.NONE

    def invitation_options(self, base: InvitationOptions) -> InvitationOptions:
        """Only what Microsoft's document sends: no invitedUserType, message body, cc or sponsors."""
        send = self.mail is MailChoice.MICROSOFT
        return InvitationOptions(
            redirect_url=self.redirect_url or base.redirect_url,
            user_type=None,
            send_message=send,
            message_language=(self.message_language or base.message_language) if send else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "sendInvitationMessage": self.send_message,
            "messageLanguage": self.message_language,
            "redirectUrl": self.redirect_url,
            "setGuestUserType": self.set_guest_user_type,
            "mailProfile": self.mail_profile,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConversionOptions:
        return cls(
            bool(data.get("sendInvitationMessage", False)),
            data.get("messageLanguage"),
            data.get("redirectUrl"),
            bool(data.get("setGuestUserType", False)),
            data.get("mailProfile"),
        )


def parse_conversion_request(content_type: str | None, body: bytes) -> tuple[str, str | None, ConversionOptions]:
    """``POST /api/manage/conversions``'s body: the user, the expected address, the options."""
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise ValidationFailed({"body": ["Send JSON (application/json)."]})
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed({"body": ["The body is not valid JSON."]}) from None
    if not isinstance(data, dict):
        raise ValidationFailed({"body": ["Send a JSON object."]})
    errors: dict[str, list[str]] = {key: ["is not a known field"] for key in sorted(set(data) - REQUEST_KEYS)}
    user = data.get("user")
    if not isinstance(user, str) or not is_user_reference(user.strip()):
        errors["user"] = ["An object id (GUID) or user principal name is required."]
    email = data.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email or len(email) > 254):
        errors["email"] = ["Must be the address the user's mail holds."]
    for flag in ("sendInvitationMessage", "setGuestUserType"):
        if flag in data and not isinstance(data[flag], bool):
            errors[flag] = ["Must be true or false."]
    language = data.get("messageLanguage")
    if language is not None and not (isinstance(language, str) and _LANGUAGE.match(language)):
        errors["messageLanguage"] = ["A language tag such as en-US."]
    profile = data.get("mailProfile")
    if profile is not None and not (isinstance(profile, str) and 0 < len(profile) <= 64):
        errors["mailProfile"] = ["The name of a policy profile with a mailTemplate."]
    if profile is not None and data.get("sendInvitationMessage") is True:
        errors["sendInvitationMessage"] = ["With mailProfile the organisation mails instead of Microsoft."]
    redirect = data.get("redirectUrl")
    if redirect is not None and not (
        isinstance(redirect, str) and redirect.startswith("https://") and len(redirect) < 2048
    ):
        errors["redirectUrl"] = ["An absolute https URL."]
    if errors:
        raise ValidationFailed(errors)
    options = ConversionOptions(
        # Microsoft's document sends its mail by default; mailProfile is the organisation's own mail instead.
        bool(data.get("sendInvitationMessage", profile is None)),
        language,
        redirect,
        bool(data.get("setGuestUserType", False)),
        profile,
    )
    return str(user).strip(), email.strip() if isinstance(email, str) else None, options


class Converter:
    """Checks and converts users through a ``Directory``."""

    def __init__(self, directory: Directory, base: InvitationOptions, *, priority: str) -> None:
        self._directory = directory
        self._base = base
        self._priority = priority

    async def check(self, reference: str, expected_mail: str | None = None) -> Verdict:
        """Read the user (one GET) and the tenant's verified domains (cached), then the pre-checks. No writes."""
        user = await self._directory.get_user(reference)
        return precheck(user, await self._directory.verified_domains(), expected_mail)

    def invitation(self, verdict: Verdict, options: ConversionOptions) -> Invitation:
        """The ``POST /invitations`` that converts an eligible user."""
        assert verdict.user is not None and verdict.user.mail
        return Invitation(
            email=verdict.user.mail,
            display_name=None,
            options=options.invitation_options(self._base),
            invited_user_id=verdict.user.id,
            priority=self._priority,
        )

    async def convert(
        self, verdict: Verdict, options: ConversionOptions, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> InvitationResult:
        """Convert an eligible user (one ``POST /invitations``).

        ``PermanentGraphError`` ``InvitedUserMismatch`` when Graph's answer names another user than the one
        meant: nothing more is done for it, and an admin must look.
        """
        assert verdict.user is not None
        result = await self._directory.invite(self.invitation(verdict, options), fence=fence)
        if result.invited_user_id != verdict.user.id:
            raise PermanentGraphError(
                "Graph's answer names another user than the one being converted",
                code="InvitedUserMismatch",
                request_id=result.request_id,
            )
        return result

    async def make_guest(self, user_id: str) -> None:
        """``userType`` → ``Guest`` after a conversion (billing by MAU; docs/conversion.md)."""
        await self._directory.set_user_type(user_id, "Guest", priority=self._priority)

    async def settle(self, user: DirectoryUser, options: ConversionOptions) -> bool:
        """What follows a conversion: ``userType`` → Guest when asked and not already; True if it was changed.

        Errors are raised, never swallowed: a conversion whose userType change failed is not done as asked.
        """
        if options.set_guest_user_type and (user.user_type or "").lower() != "guest":
            await self.make_guest(user.id)
            return True
        return False

    async def fresh_redeem_url(self, user: DirectoryUser, options: ConversionOptions) -> InvitationResult:
        """A new redeem URL for a user already converted (the answer carrying the first was lost).

        ``resetRedemption`` with ``invitedUser.id`` and no mail (graph/FACTS.md, "Guest lifecycle"): object
        id, groups and app assignments stay. Only for a user who has not redeemed yet.
        """
        assert user.mail
        invitation = Invitation(
            email=user.mail,
            display_name=None,
            options=replace(options.invitation_options(self._base), send_message=False, message_language=None),
            invited_user_id=user.id,
            reset_redemption=True,
            priority=self._priority,
        )
        return await self._directory.invite(invitation)


@dataclass(frozen=True)
class Recovered:
    """What ``after_lost_answer`` found or made: the invitation status and, if one was needed, a redeem URL."""

    status: str
    redeem_url: str | None = field(default=None, repr=False)


async def after_lost_answer(converter: Converter, user: DirectoryUser, options: ConversionOptions) -> Recovered:
    """Finish a conversion whose answer was lost (the user is found external): what the answer would have led to.

    The ``userType`` change when asked, and, when Microsoft does not mail (the organisation's mail, or none),
    a fresh redeem URL for the mail or the admin, unless the user has redeemed already. Errors are raised.
    """
    await converter.settle(user, options)
    state = user.external_user_state or "PendingAcceptance"
    if options.mail is MailChoice.MICROSOFT or state.lower() == "accepted":
        return Recovered(state)
    result = await converter.fresh_redeem_url(user, options)
    return Recovered(result.status or state, result.redeem_url)
