"""The register of the guests the portal made, and when each is next due for its lifecycle rules.

This package owns the register: one record per guest the portal created or converted (user id, profile,
groups, sponsors, approvers, invited and redeemed dates, the next time its rules are due) and the due
index that lists guests by due day, read in bounded pages like the sweeper's index. It is filled by
``record_invited`` (called by the lifecycle when a request ends ``invited``) and, for requests already on
record, by ``backfill``. It knows the policy's lifecycle rules only to compute the first due time; what
happens when a guest is due (reminders, reviews, blocking) is ``acting`` (one guest, at most once) and
``sweep`` (the due guests, in bounded pages); ``digest`` mails reviewers once a day; ``reviews`` answers
the manage routes (the Reviews tab, restore).

A guest that is not in the register was not made by the portal, and the portal never touches it.
"""

from __future__ import annotations

from .acting import GuestActions
from .digest import Digests
from .recording import BackfillReport, GuestRecorder, backfill, record_invited
from .records import GuestDue, GuestRecord, GuestState, first_due
from .register import GuestRegister, TableGuestRegister, due_day
from .reviews import GuestAdmin
from .sweep import GuestSweep, SweepReport

__all__ = [
    "BackfillReport",
    "Digests",
    "GuestActions",
    "GuestAdmin",
    "GuestDue",
    "GuestRecord",
    "GuestRecorder",
    "GuestRegister",
    "GuestState",
    "GuestSweep",
    "SweepReport",
    "TableGuestRegister",
    "backfill",
    "due_day",
    "first_due",
    "record_invited",
]
