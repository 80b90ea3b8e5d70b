"""What a failure code means and what fixes it, for the codes a sign-up commonly fails with.

Graph's codes follow Microsoft's documentation (Graph's error envelope and resolving authorization errors;
B2B collaboration: invitation API, allow/block lists, cross-tenant access settings, external collaboration
settings; ``/work/shared/graph/FACTS.md`` keeps the references). Microsoft publishes no invitation-specific list
of codes, so the causes below are the documented ones each code is answered with. The app's own codes
(``shared.lifecycle``) are explained from its rules. Unknown codes get no cause and no fix.
"""

from __future__ import annotations

from typing import Final

CAUSES: Final[dict[str, tuple[str, str]]] = {
    "Authorization_RequestDenied": (
        "Graph refused the invitation for lack of privilege: the app lost User.Invite.All (or admin consent), "
        "or the tenant's guest invite settings let no one invite.",
        "Grant User.Invite.All as an application permission with admin consent; in External collaboration "
        "settings allow admins and apps to invite; then replay the failed sign-ups.",
    ),
    "Forbidden": (
        "Graph answered 403: invitations are disabled for the tenant, or the domain is blocked by the B2B "
        "allow/block list or by cross-tenant access settings.",
        "Check External collaboration settings (guest invite settings, collaboration restrictions) and the "
        "cross-tenant access settings for the partner's organisation; replay once fixed.",
    ),
    "Request_BadRequest": (
        "Graph refused the request as invalid: often an address its rules reject, or a proxyAddresses "
        "conflict with an existing user or contact.",
        "Look at the request's error message; resolve the conflicting object in the directory, then replay.",
    ),
    "BadRequest": (
        "Graph refused the request as invalid (the address or redirect URL, or a blocked domain).",
        "Read the error message; check INVITE_REDIRECT_URL and the B2B allow/block list, then replay.",
    ),
    "Request_ResourceNotFound": (
        "An object the invitation named (a sponsor, group or user) does not exist in the directory.",
        "Fix the object ids in the policy or settings (INVITE_SPONSOR_IDS, profile groups), then replay.",
    ),
    "InvalidAuthenticationToken": (
        "Graph did not accept the app's token: wrong tenant or audience, or an expired credential.",
        "Check AZURE_TENANT_ID and the app's credential (managed identity or certificate), then replay.",
    ),
    "AuthenticationFailed": (
        "The app could not get a token from Microsoft Entra ID.",
        "Check the credential settings and that the identity exists and is enabled; replay once tokens work.",
    ),
    "ExistingMember": (
        "The address belongs to a member of the tenant: no guest invitation is needed or possible.",
        "Nothing to fix; the person signs in with their own account.",
    ),
    "TenantDomain": (
        "The address is in one of the tenant's own domains.",
        "Nothing to fix; tenant addresses are members, not guests.",
    ),
    "DeadlineExceeded": (
        "Graph stayed unavailable or throttled past the retry deadline (SIGNUP_RETRY_DEADLINE_SECONDS).",
        "Check Graph's health and the write budget; replay the failed sign-ups.",
    ),
    "TooManyRequests": (
        "Graph throttled the app (429) until the retry deadline.",
        "Lower GRAPH_WRITE_BUDGET or spread the load; replay the failed sign-ups.",
    ),
    "InternalError": (
        "The worker failed on this request repeatedly (a bug or bad data), and Graph had not acted.",
        "Look up the request's logs by its id; replay once the cause is fixed.",
    ),
}


def cause_of(code: str) -> tuple[str | None, str | None]:
    """The documented cause and fix of ``code``; (None, None) for a code nobody documented."""
    return CAUSES.get(code, (None, None))
