"""Every HTTP route of the app, declared once: its method, handler and the rules that apply."""

from __future__ import annotations

from typing import Final

from . import admin, guests, handlers
from .pipeline import Route

SUBMIT_SIGNUP: Final = Route("submit_signup", "POST", handlers.submit_signup, cors=True, form=True)
GET_SIGNUP: Final = Route("get_signup", "GET", handlers.get_signup)
SIGNUP_PAGE: Final = Route("signup_page", "GET", handlers.signup_page)
STATUS_PAGE: Final = Route("signup_status_page", "GET", handlers.status_page)
MANAGE_PAGE: Final = Route("manage_page", "GET", handlers.manage_page)
STATIC_FILE: Final = Route("static_file", "GET", handlers.static_file)
OPENAPI: Final = Route("get_openapi", "GET", handlers.openapi)
LIST_SIGNUPS: Final = Route("list_signups", "GET", admin.list_signups)
SIGNUP_DETAIL: Final = Route("get_signup_detail", "GET", admin.signup_detail)
APPROVE: Final = Route("approve_signup", "POST", admin.approve, admin_write=True)
DENY: Final = Route("deny_signup", "POST", admin.deny, admin_write=True)
CONVERT: Final = Route("submit_conversion", "POST", admin.convert, admin_write=True)
# Issue 21: the admin overview and console (shared.stats, shared.approval.bulk).
STATS: Final = Route("get_stats", "GET", admin.stats)
DECISIONS: Final = Route("submit_decisions", "POST", admin.decisions, admin_write=True)
# The guest lifecycle (docs/guest-lifecycle.md).
LIST_REVIEWS: Final = Route("list_reviews", "GET", guests.list_reviews)
DECIDE_REVIEWS: Final = Route("decide_reviews", "POST", guests.decide_reviews, admin_write=True)
LIST_GUESTS: Final = Route("list_guests", "GET", guests.list_guests)
RESTORE_GUEST: Final = Route("restore_guest", "POST", guests.restore_guest, admin_write=True)
