"""Approval: the admins' side of a sign-up that waits for review.

This package owns the decisions an approver makes (approve, deny; conditional
and idempotent, so racing approvers get one outcome and the loser is told), the
memory of denials (an address denied is refused without a new review for
``APPROVAL_DENIAL_MEMORY_SECONDS``), the admin views of a sign-up and its
history, and the mail that tells a profile's approvers a request waits. The
lifecycle (``shared.lifecycle``) does the queueing and the Graph calls; the
audit trail (``shared.audit``) records every decision.
"""

from __future__ import annotations

from .denials import DenialMemory, TableDenialMemory
from .mail import approver_mail
from .service import Approvals
from .views import admin_view

__all__ = ["Approvals", "DenialMemory", "TableDenialMemory", "admin_view", "approver_mail"]
