"""The admin's console (``GET /api/manage``): its tabs, its filters and the texts its scripts show.

The console is the approver's page grown into tabs (pending, recent decisions,
failures, conversions, reviews, overview). The page holds no data: its scripts
read the admin routes with the caller's credentials. What a caller may do is
decided by the routes; the page only leaves out what the caller's role cannot
use (a principal without the approvers' role gets no pending list, no reviews
and no decision buttons).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ..lifecycle.models import Status
from .i18n import translations

# The order of statuses in filters, legends and charts: the lifecycle's order, then the outcomes.
STATUS_ORDER: Final = (
    Status.RECEIVED,
    Status.PENDING_APPROVAL,
    Status.QUEUED,
    Status.INVITING,
    Status.RETRYING,
    Status.INVITED,
    Status.LINKED,
    Status.FAILED,
    Status.UNKNOWN,
    Status.DENIED,
    Status.EXPIRED,
)


def status_names(language: str) -> dict[str, str]:
    """Each status in words, in ``language``."""
    _ = translations(language).gettext
    names = {
        Status.RECEIVED: _("Received"),
        Status.PENDING_APPROVAL: _("Waiting for approval"),
        Status.QUEUED: _("Queued"),
        Status.INVITING: _("Inviting"),
        Status.RETRYING: _("Retrying"),
        Status.INVITED: _("Invited"),
        Status.LINKED: _("Linked to an earlier request"),
        Status.FAILED: _("Failed"),
        Status.UNKNOWN: _("In doubt"),
        Status.DENIED: _("Denied"),
        Status.EXPIRED: _("Expired"),
    }
    return {status.value: names[status] for status in STATUS_ORDER}


def tabs(language: str, *, can_approve: bool) -> list[dict[str, Any]]:
    """The console's tabs for this caller: id, label, and which filters the tab's list takes."""
    _ = translations(language).gettext
    all_tabs: list[dict[str, Any]] = [
        {"id": "pending", "label": _("Pending"), "heading": _("Pending requests"), "list": True, "approver": True},
        {"id": "decisions", "label": _("Recent decisions"), "heading": _("Recent decisions"), "list": True},
        {"id": "failures", "label": _("Failures"), "heading": _("Failed and in-doubt requests"), "list": True},
        {"id": "conversions", "label": _("Conversions"), "heading": _("Conversions of internal users"), "list": True},
        {"id": "reviews", "label": _("Reviews"), "heading": _("Guests awaiting review"), "approver": True},
        {"id": "overview", "label": _("Overview"), "heading": _("Overview of the last 30 days")},
    ]
    return [tab for tab in all_tabs if can_approve or not tab.get("approver")]


def console_messages(language: str) -> dict[str, Any]:
    """The texts the console's scripts show (the scripts carry no text of their own)."""
    t = translations(language)
    _: Callable[[str], str] = t.gettext
    return {
        "statuses": status_names(language),
        "status_order": [status.value for status in STATUS_ORDER],  # the page's JSON block sorts its keys
        "status": _("Status"),
        "profile": _("Profile"),
        "select_item": _("Select %(name)s"),
        "selected": _("Selected: %(count)s"),
        "shown": _("Shown: %(count)s"),
        "no_items": _("Nothing matches these filters."),
        "bad_filters": _(
            "These filters cannot be used: check the address and that the first date is not after the last."
        ),
        "not_available": _("This part of the console is not available on this server yet."),
        "decision": _("Decision"),
        "decided": _("%(outcome)s by %(by)s, %(when)s"),
        "outcome_approved": _("Approved"),
        "outcome_denied": _("Denied"),
        "invitation": _("Invitation"),
        "error": _("Error"),
        "conversion": _("Conversion of"),
        "updated": _("Last change"),
        "result_approved": _("Approved"),
        "result_denied": _("Denied"),
        "result_already_decided": _("Already decided"),
        "result_conflict": _("Decided otherwise by someone else"),
        "result_not_found": _("Not found"),
        "result_kept": _("Kept"),
        "result_removed": _("Removed"),
        "result_not_pending": _("Not awaiting review"),
        "result_in_doubt": _("In doubt, checked again by the next sweep"),
        "result_busy": _("Being acted on, try again in a minute"),
        "result_failed": _("Failed"),
        "guest_states": {
            "active": _("Active"),
            "review_pending": _("Awaiting review"),
            "blocked": _("Blocked"),
            "deleted": _("Deleted"),
            "removed": _("Removed"),
        },
        "bulk_done": _("Done. %(summary)s"),
        "select_first": _("Select at least one entry first."),
        "working": _("Working…"),
        "user_id": _("User id"),
        "review_state": _("State"),
        "invited_at": _("Invited"),
        "redeemed_at": _("Accepted the invitation"),
        "not_redeemed": _("Not yet"),
        "last_reviewed": _("Last reviewed"),
        "review_due": _("Answer due by"),
        "never": _("Never"),
        "restore": _("Restore"),
        "restored": _("Restored: %(name)s."),
        "restorable_until": _("Can be restored until %(when)s."),
        "restore_gone": _("Microsoft keeps a deleted user for 30 days; this one can no longer be restored."),
        "guests_none": _("No guests in this state."),
        "attention": _("Needs attention"),
        "attention_pending": _("Requests waiting for review"),
        "attention_doubt": _("Requests in doubt"),
        "attention_rerun": _("Conversions waiting for a rerun"),
        "per_day": _("Requests per day, by status"),
        "per_day_label": _("Requests per day by status, %(first)s to %(last)s: %(total)s in all."),
        "date": _("Date"),
        "total": _("Total"),
        "tti": _("Time from request to invitation"),
        "tti_summary": _("%(count)s invitations. Half took at most %(p50)s; 95 in 100 at most %(p95)s."),
        "tti_none": _("No invitations in this period."),
        "tti_bucket": _("At most %(duration)s"),
        "tti_more": _("Longer"),
        "invitations": _("Invitations"),
        "failures": _("Failures by code"),
        "failures_none": _("No failures in this period."),
        "code": _("Code"),
        "count": _("Count"),
        "cause": _("Cause"),
        "fix": _("What to do"),
        "budget": _("Directory write budget"),
        "budget_summary": _("%(used)s of %(limit)s writes in the last %(window)s (%(percent)s)."),
        "as_table": _("Show as a table"),
        "generated": _("Figures as of %(when)s."),
    }
