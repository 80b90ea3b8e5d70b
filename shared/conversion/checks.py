"""The pre-checks before a conversion: each failing rule has its own outcome code, and nothing is written.

Microsoft documents (graph/FACTS.md, "Converting internal users"): the user must
exist and be internal (not already external, not a guest); its ``mail`` must
hold the external address the invitation uses, outside the tenant's verified
domains; and ``onPremisesUserPrincipalName`` must be absent, since Entra Connect
writes it and it blocks conversion. A synced user is flagged: on-premises stays
the source of authority for it.
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
    IS_GUEST = "IsGuest"
    MAIL_MISSING = "MailMissing"
    MAIL_IN_VERIFIED_DOMAIN = "MailInVerifiedDomain"
    MAIL_MISMATCH = "MailMismatch"
    ON_PREMISES_UPN = "OnPremisesUpn"


REASONS = {
    Code.ELIGIBLE: "passes every pre-check",
    Code.NOT_FOUND: "no user with that object id or UPN",
    Code.ALREADY_EXTERNAL: "already a B2B (external) user",
    Code.IS_GUEST: "a guest account, not an internal one",
    Code.MAIL_MISSING: "mail is empty: it must hold the partner's external address",
    Code.MAIL_IN_VERIFIED_DOMAIN: "mail is in one of this tenant's verified domains, not an external address",
    Code.MAIL_MISMATCH: "mail differs from the address given for the invitation",
    Code.ON_PREMISES_UPN: "onPremisesUserPrincipalName is set (Entra Connect): such a user cannot be converted",
}
SYNCED_NOTE = (
    "synced from on-premises: the on-premises directory stays the source of authority; "
    "reset the on-premises password so the old credentials stop working"
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


def precheck(user: DirectoryUser | None, verified_domains: frozenset[str], expected_mail: str | None = None) -> Verdict:
    """Apply the documented rules in order; the first that fails decides."""
    if user is None:
        return Verdict(Code.NOT_FOUND, None)
    synced = bool(user.on_premises_sync_enabled)
    if user.external_user_state is not None or (user.creation_type or "").lower() == "invitation":
        return Verdict(Code.ALREADY_EXTERNAL, user, synced)
    if (user.user_type or "Member").lower() == "guest":
        return Verdict(Code.IS_GUEST, user, synced)
    mail = (user.mail or "").strip()
    if not mail:
        return Verdict(Code.MAIL_MISSING, user, synced)
    if mail.rsplit("@", 1)[-1].lower() in verified_domains:
        return Verdict(Code.MAIL_IN_VERIFIED_DOMAIN, user, synced)
    if expected_mail is not None and expected_mail.strip().casefold() != mail.casefold():
        return Verdict(Code.MAIL_MISMATCH, user, synced)
    if user.on_premises_user_principal_name:
        return Verdict(Code.ON_PREMISES_UPN, user, synced)
    return Verdict(Code.ELIGIBLE, user, synced)
