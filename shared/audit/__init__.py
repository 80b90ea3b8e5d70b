"""The audit trail: every decision about a sign-up, in order, for the admins.

One Table (``SIGNUP_AUDIT_TABLE``) holds one partition per sign-up; a row's key
starts with the event's time, so one request's history reads in order with a
single partition query::

    PartitionKey   RowKey                                   event   actor   detail (JSON)
    <sign-up id>   20261122T101500.123Z-0-received          received  requester  {"email": ..., "domain": ...}
    <sign-up id>   20261122T101500.123Z-1-policy            policy    policy     {"action": "review", ...}
    <sign-up id>   20261122T104210.004Z-9-approved          approved  <approver> {"reason": ...}

Events: ``received``, ``policy``, ``approved``, ``denied``, ``approver_mail``,
``invited``, ``group_added``, ``group_failed``, ``mail_sent``, ``mail_unknown``,
``failed``, ``expired``. The row key is derived from the moment the record
itself stores for the event, so writing an event again (a retried request, a
redelivered message) overwrites the same row instead of adding a second one.

This is the one place besides the sign-up record that holds the address (in
the ``received`` event): logs never do. Writing an entry is retried a little;
if storage still fails the event is logged without the address and the
lifecycle goes on, since the sign-up record is the source of truth for its state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from azure.core.exceptions import AzureError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ..errors import StorageError
from ..storage import EnsureOnce

log = logging.getLogger(__name__)

APPEND_ATTEMPTS: Final = 3


# Events written at the same moment (received and policy) sort in the lifecycle's order.
EVENT_ORDER: Final = {
    "received": 0,
    "policy": 1,
    "approver_mail_sent": 2,
    "approver_mail_unknown": 2,
    "approver_mail_failed": 2,
    "approved": 3,
    "denied": 3,
    "invited": 4,
    "group_added": 5,
    "group_failed": 5,
    "mail_sent": 6,
    "mail_unknown": 6,
    "mail_failed": 6,
}


def row_key(at: datetime, event: str, qualifier: str = "") -> str:
    """Sortable row key: the event's time (UTC, milliseconds), its rank at one moment, then its name."""
    stamp = at.strftime("%Y%m%dT%H%M%S.") + f"{at.microsecond // 1000:03d}Z"
    return f"{stamp}-{EVENT_ORDER.get(event, 9)}-{event}" + (f"-{qualifier}" if qualifier else "")


@dataclass(frozen=True)
class AuditEntry:
    """One event in a sign-up's history."""

    signup_id: str
    at: datetime
    event: str
    actor: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    qualifier: str = ""  # tells apart several events of one kind at one moment (e.g. one per group)

    def view(self) -> dict[str, Any]:
        """The entry as the admin API shows it."""
        stamp = self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"at": stamp, "event": self.event, "actor": self.actor, "detail": dict(self.detail)}


class AuditLog(Protocol):
    """Append-only history per sign-up."""

    async def append(self, entry: AuditEntry) -> None:
        """Record ``entry`` (idempotent for the same moment and event); never raises."""
        ...

    async def history(self, signup_id: str) -> list[AuditEntry]:
        """Every entry of one sign-up, oldest first."""
        ...


class TableAuditLog:
    """``AuditLog`` on Azure Table storage."""

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self._ensure = EnsureOnce()

    async def append(self, entry: AuditEntry) -> None:
        entity = {
            "PartitionKey": entry.signup_id,
            "RowKey": row_key(entry.at, entry.event, entry.qualifier),
            "at": entry.at,
            "event": entry.event,
            "actor": entry.actor,
            "detail": json.dumps(dict(entry.detail), sort_keys=True),
        }
        for attempt in range(APPEND_ATTEMPTS):
            try:
                await self._ensure(self._client.create_table, "audit table")
                await self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)
                return
            except (AzureError, StorageError) as exc:
                if attempt + 1 == APPEND_ATTEMPTS:
                    log.error(
                        "audit.append_failed signup_id=%s event=%s error=%s",
                        entry.signup_id,
                        entry.event,
                        type(exc).__name__,
                    )
                    return
                await asyncio.sleep(0.2 * 2**attempt)

    async def history(self, signup_id: str) -> list[AuditEntry]:
        await self._ensure(self._client.create_table, "audit table")
        entries: list[AuditEntry] = []
        try:
            async for entity in self._client.query_entities("PartitionKey eq @pk", parameters={"pk": signup_id}):
                entries.append(
                    AuditEntry(
                        signup_id,
                        entity["at"],
                        str(entity["event"]),
                        str(entity.get("actor") or ""),
                        json.loads(entity.get("detail") or "{}"),
                    )
                )
        except AzureError as exc:
            raise StorageError(f"could not read the history of {signup_id}: {type(exc).__name__}") from exc
        return entries


class MemoryAuditLog:
    """``AuditLog`` in memory (tests, and the fakes kit)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], AuditEntry] = {}

    async def append(self, entry: AuditEntry) -> None:
        self.rows[(entry.signup_id, row_key(entry.at, entry.event, entry.qualifier))] = entry

    async def history(self, signup_id: str) -> list[AuditEntry]:
        return [entry for (sid, _), entry in sorted(self.rows.items()) if sid == signup_id]
