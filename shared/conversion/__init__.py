"""Converting internal users to B2B collaboration users (invitation with ``invitedUser.id``).

Before B2B, organisations gave partners internal accounts. ``POST /invitations``
with ``invitedUser: {id}`` turns such an account into a B2B user that signs in
with its own organisation's identity, keeping its object id, UPN, group
memberships and app assignments. This package owns the pre-checks Microsoft
documents (``checks``), one conversion (``Converter``), and the bulk command
behind ``signup-admin convert`` with its resumable report (``bulk``, ``report``,
``mailing``). The
admin route ``POST /api/manage/conversions`` puts one conversion on the
sign-up queue; the lifecycle's worker runs it through ``Converter`` with the
same retries and one-mail guarantee as a sign-up.
"""

from __future__ import annotations

from .checks import Code, Verdict, precheck
from .converter import (
    ConversionOptions,
    Converter,
    MailChoice,
    Recovered,
    after_lost_answer,
    parse_conversion_request,
)

__all__ = [
    "Code",
    "ConversionOptions",
    "Converter",
    "MailChoice",
    "Recovered",
    "Verdict",
    "after_lost_answer",
    "parse_conversion_request",
    "precheck",
]
