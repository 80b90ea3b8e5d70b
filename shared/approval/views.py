"""What the admin routes show of a sign-up (the address included: they are for the organisation's admins)."""

from __future__ import annotations

from typing import Any

from ..audit import AuditEntry
from ..lifecycle.models import Signup, Status, iso


def admin_view(signup: Signup, history: list[AuditEntry] | None = None) -> dict[str, Any]:
    """The admin view of ``signup``; with ``history`` when one sign-up is asked for."""
    decision = None
    if signup.decided_at is not None:
        outcome = "denied" if signup.status is Status.DENIED else "approved"
        decision = {
            "outcome": outcome,
            "by": signup.decided_by,
            "at": iso(signup.decided_at),
            "reason": signup.decision_reason,
        }
    invitation = None
    if signup.invited_user_id or signup.invitation_status:
        invitation = {
            "invitedUserId": signup.invited_user_id,
            "invitationStatus": signup.invitation_status,
            "mailed": signup.invitation_mailed,
            "redeemUrl": signup.redeem_url,
        }
    groups = []
    for group, state in sorted(signup.groups.items()):
        failed, _, code = state.partition(":")
        groups.append({"id": group, "state": failed, **({"error": code} if code else {})})
    view: dict[str, Any] = {
        "id": signup.id,
        "email": signup.email,
        "displayName": signup.display_name,
        "company": signup.company,
        "justification": signup.justification,
        "answers": dict(signup.answers),
        "language": signup.language,
        "termsVersion": signup.terms_version,
        "domain": signup.domain,
        "status": signup.status.value,
        "createdAt": iso(signup.created_at),
        "updatedAt": iso(signup.updated_at),
        "linkedTo": signup.linked_to,
        "policy": {"profile": signup.policy_profile, "action": signup.policy_action, "reason": signup.policy_reason},
        "decision": decision,
        "invitation": invitation,
        "groups": groups,
        "mail": {"state": signup.org_mail.value} if signup.org_mail else None,
        "approverMail": {"state": signup.approver_mail.value} if signup.approver_mail else None,
        "error": {"code": signup.error_code, "message": signup.error_message} if signup.error_code else None,
    }
    if history is not None:
        view["history"] = [entry.view() for entry in history]
    return view
