"""The pre-checks before a conversion: each failing rule has its own outcome code, and nothing is written.

Microsoft's document ("Invite internal users to B2B collaboration"; graph/FACTS.md,
"Converting internal users") is written for *internal guest users*: partner
accounts the organisation created with internal credentials, often with
``userType: Guest``. ``userType`` therefore decides nothing here. A user is
refused only when Graph's properties show it is **already external**:

* ``externalUserState`` is set (``PendingAcceptance`` or ``Accepted``: Graph sets it
  only for users invited through B2B, conversions included), or
* ``creationType`` is ``Invitation`` (created by a B2B invitation), or
* one of its ``identities`` has ``signInType`` ``federated`` (a B2B identity:
  issuer ``ExternalAzureAD``, ``MicrosoftAccount``, ``mail`` for one-time passcodes,
  or a federated provider such as ``google.com``). Internal credentials show as
  ``userPrincipalName`` identities issued by the tenant.

The blocking rules run first (missing, already external, ``onPremisesUserPrincipalName``
set), so an admin never fixes a user's ``mail`` only to learn that the user cannot be
converted; then the rules an admin can fix: ``mail`` must hold the external address,
outside the tenant's verified domains (and equal to the address given, if one was).
A synced user is flagged: on-premises stays the source of authority for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..graph.directory import DirectoryUser


class Code(StrEnum):
    """A pre-check's outcome."""

    ELIGIBLE = "Eligible"
    NOT_FOUND = "NotFound"
    ALREADY_EXTERNAL = "AlreadyExternal"
    ON_PREMISES_UPN = "OnPremisesUpn"
    MAIL_MISSING = "MailMissing"
    MAIL_IN_VERIFIED_DOMAIN = "MailInVerifiedDomain"
    MAIL_MISMATCH = "MailMismatch"


REASONS = {
    Code.ELIGIBLE: "passes every pre-check",
    Code.NOT_FOUND: "no user with that object id or UPN",
    Code.ALREADY_EXTERNAL: "already a B2B (external) user",
    Code.ON_PREMISES_UPN: (
        "onPremisesUserPrincipalName is set (Entra Connect writes it): change the sync rule that writes it first"
    ),
    Code.MAIL_MISSING: "mail is empty: it must hold the partner's external address",
    Code.MAIL_IN_VERIFIED_DOMAIN: "mail is in one of this tenant's verified domains, not an external address",
    Code.MAIL_MISMATCH: "mail differs from the address given for the invitation",
}
BLOCKING = frozenset({Code.NOT_FOUND, Code.ALREADY_EXTERNAL, Code.ON_PREMISES_UPN})
SYNCED_NOTE = (
    "synced from on-premises: the on-premises directory stays the source of authority (disabling or deleting "
    "the on-premises account carries over); set the on-premises password to a random value"
)


@dataclass(frozen=True)
class Verdict:
    """What the pre-checks found for one user."""

    code: Code
    user: DirectoryUser | None
    synced: bool = False

    @property
    def eligible(self) -> bool:
        return self.code is Code.ELIGIBLE

    @property
    def reason(self) -> str:
        """Why, in words (with the synced flag when it applies)."""
        text = REASONS[self.code]
        return f"{text}; {SYNCED_NOTE}" if self.synced else text


def already_external(user: DirectoryUser) -> bool:
    """The rule above: an external user state, an invitation creation type, or a B2B (federated) identity."""
    if user.external_user_state:
        return True
    if (user.creation_type or "").lower() == "invitation":
        return True
    return any(sign_in_type.lower() == "federated" for sign_in_type, _issuer in user.identities)


def precheck(user: DirectoryUser | None, verified_domains: frozenset[str], expected_mail: str | None = None) -> Verdict:
    """Apply the documented rules in order, blocking ones first; the first that fails decides."""
    if user is None:
        return Verdict(Code.NOT_FOUND, None)
    synced = bool(user.on_premises_sync_enabled)
    if already_external(user):
        return Verdict(Code.ALREADY_EXTERNAL, user, synced)
    if user.on_premises_user_principal_name:
        return Verdict(Code.ON_PREMISES_UPN, user, synced)
    mail = (user.mail or "").strip()
    if not mail:
        return Verdict(Code.MAIL_MISSING, user, synced)
    if mail.rsplit("@", 1)[-1].lower() in verified_domains:
        return Verdict(Code.MAIL_IN_VERIFIED_DOMAIN, user, synced)
    if expected_mail is not None and expected_mail.strip().casefold() != mail.casefold():
        return Verdict(Code.MAIL_MISMATCH, user, synced)
    return Verdict(Code.ELIGIBLE, user, synced)
