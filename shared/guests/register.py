"""The guest register in Azure Table storage, behind a small protocol.

It shares the lifecycle's table (no new setting), in partitions no sign-up key can take::

    PartitionKey            RowKey     what
    guest-<user object id>  guest      a registered guest (``GuestRecord``)
    guestdue-<YYYYMMDD>     <user id>  the due index: look at that guest on or after that day (UTC)
    gueststate-<state>      <user id>  the state index: guests awaiting review, blocked or deleted
    guestsweep              cursor     the last due day a guest sweep finished

One partition per due day, so a sweep reads the days that have come, in bounded pages, and never scans
the table. A record's ``dueAt`` is the truth: an index entry for a later day is stale and is dropped by
whoever reads it. The state index lists the guests in one state (the Reviews tab, the blocked and deleted
lists) in bounded pages; its entry is written before the record enters the state and removed after it
leaves, and readers drop entries whose record says otherwise. Writes after creation are ETag-conditional
(``ConcurrencyConflict`` on a lost race).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TransactionOperation
from azure.data.tables.aio import TableClient

from ..errors import ConcurrencyConflict, StorageError
from ..storage import Table
from .records import GuestDue, GuestRecord, GuestState

GUEST_PREFIX: Final = "guest-"
GUEST_ROW: Final = "guest"
DUE_PREFIX: Final = "guestdue-"
STATE_PREFIX: Final = "gueststate-"
INDEXED_STATES: Final = frozenset({GuestState.REVIEW_PENDING, GuestState.BLOCKED, GuestState.DELETED})
DAY_FORMAT: Final = "%Y%m%d"
CURSOR_KEY: Final = ("guestsweep", "cursor")
BATCH_LIMIT: Final = 100  # an entity group transaction holds at most 100 operations
MAX_PAGE: Final = 1000  # Table storage returns at most 1,000 entities per page


def due_day(moment: datetime) -> str:
    """The due-index day ``moment`` falls in (UTC)."""
    return moment.astimezone(UTC).strftime(DAY_FORMAT)


def index_day(due_at: datetime, now: datetime | None = None) -> str:
    """The day to index a guest due at ``due_at`` under: never before today (a sweep reads from its cursor on)."""
    return due_day(max(due_at, now or datetime.now(UTC)))


class GuestRegister(Protocol):
    """The guests the portal made, and their due index."""

    async def insert(self, record: GuestRecord) -> GuestRecord | None:
        """Create a record; the stored record (with its ETag), or None when the guest is registered already."""
        ...

    async def get(self, user_id: str) -> GuestRecord | None:
        """A guest's record, or None (a guest the portal did not make)."""
        ...

    async def replace(self, record: GuestRecord) -> GuestRecord:
        """Overwrite if unchanged since read; ``ConcurrencyConflict`` when someone else wrote first."""
        ...

    async def page(self, size: int, token: str | None) -> tuple[list[GuestRecord], str | None]:
        """Up to ``size`` records and the token of the next page (None at the end)."""
        ...

    async def schedule(self, entry: GuestDue) -> None:
        """Write a due-index entry (idempotent)."""
        ...

    async def due(self, day: str, limit: int) -> list[GuestDue]:
        """Up to ``limit`` entries of one due day."""
        ...

    async def due_page(self, day: str, size: int, token: str | None) -> tuple[list[GuestDue], str | None]:
        """Up to ``size`` entries of one due day and the token of the next page (None at the end)."""
        ...

    async def index_state(self, user_id: str, state: GuestState) -> None:
        """Write a state-index entry (idempotent)."""
        ...

    async def unindex_state(self, user_id: str, state: GuestState) -> None:
        """Delete a state-index entry (one already gone is fine)."""
        ...

    async def in_state(self, state: GuestState, size: int, token: str | None) -> tuple[list[str], str | None]:
        """Up to ``size`` user ids of the state index and the next page's token (entries may be stale)."""
        ...

    async def unschedule(self, entries: list[GuestDue]) -> None:
        """Delete entries of one day; entries already gone are fine."""
        ...

    async def cursor(self) -> tuple[str | None, str | None]:
        """The last due day a sweep finished and the cursor's ETag ((None, None) when unset)."""
        ...

    async def advance(self, day: str, etag: str | None) -> str | None:
        """Move the cursor to ``day`` if unchanged since read; its new ETag, None when another sweep moved it."""
        ...


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_entity(record: GuestRecord) -> dict[str, Any]:
    """The Table entity for a record (None fields are left out)."""
    entity: dict[str, Any] = {
        "PartitionKey": GUEST_PREFIX + record.user_id,
        "RowKey": GUEST_ROW,
        "signupId": record.signup_id,
        "profile": record.profile,
        "invitedAt": record.invited_at,
        "groups": json.dumps(list(record.groups)),
        "sponsors": json.dumps(list(record.sponsors)),
        "approvers": json.dumps(list(record.approvers)),
        "redeemedAt": record.redeemed_at,
        "reviewedAt": record.reviewed_at,
        "dueAt": record.due_at,
        "state": record.state.value,
        "reminders": record.reminders,
        "intent": record.intent,
        "intentAt": record.intent_at,
        "reviewAskedAt": record.review_asked_at,
        "blockedAt": record.blocked_at,
        "deletedAt": record.deleted_at,
        "updatedAt": record.updated_at,
    }
    return {k: v for k, v in entity.items() if v is not None}


def from_entity(entity: Mapping[str, Any], etag: str | None) -> GuestRecord:
    """A record back from its Table entity."""
    invited = _moment(entity["invitedAt"])
    assert invited is not None
    return GuestRecord(
        user_id=str(entity["PartitionKey"]).removeprefix(GUEST_PREFIX),
        signup_id=str(entity["signupId"]),
        profile=entity.get("profile"),
        invited_at=invited,
        groups=tuple(json.loads(entity.get("groups") or "[]")),
        sponsors=tuple(json.loads(entity.get("sponsors") or "[]")),
        approvers=tuple(json.loads(entity.get("approvers") or "[]")),
        redeemed_at=_moment(entity.get("redeemedAt")),
        reviewed_at=_moment(entity.get("reviewedAt")),
        due_at=_moment(entity.get("dueAt")),
        state=GuestState(entity.get("state", GuestState.ACTIVE.value)),
        reminders=int(entity.get("reminders", 0)),
        intent=entity.get("intent"),
        intent_at=_moment(entity.get("intentAt")),
        review_asked_at=_moment(entity.get("reviewAskedAt")),
        blocked_at=_moment(entity.get("blockedAt")),
        deleted_at=_moment(entity.get("deletedAt")),
        updated_at=_moment(entity.get("updatedAt")),
        etag=etag,
    )


class TableGuestRegister:
    """``GuestRegister`` on Azure Table storage (or Azurite)."""

    def __init__(self, client: TableClient) -> None:
        self._table = Table(client)
        self._client = client

    async def insert(self, record: GuestRecord) -> GuestRecord | None:
        etag = await self._table.insert(to_entity(record))
        return None if etag is None else record.evolve(etag=etag)

    # Reads never create the table (a dry run writes nothing): a missing table reads as empty.
    async def get(self, user_id: str) -> GuestRecord | None:
        entity = await self._table.read(GUEST_PREFIX + user_id, GUEST_ROW, create=False)
        return None if entity is None else from_entity(entity, entity.metadata.get("etag"))

    async def replace(self, record: GuestRecord) -> GuestRecord:
        if record.etag is None:
            raise ValueError("replace needs the ETag the record was read with")
        etag = await self._table.replace(to_entity(record), record.etag)
        if etag is None:
            raise ConcurrencyConflict(f"guest {record.user_id} changed or vanished")
        return record.evolve(etag=etag)

    async def _page(
        self, query: str, parameters: dict[str, Any], size: int, token: str | None
    ) -> tuple[list[Any], str | None]:
        from ..lifecycle.store import decode_token, encode_token

        found: list[Any] = []
        try:
            pages: Any = self._client.query_entities(
                query, parameters=parameters, results_per_page=min(size, MAX_PAGE)
            ).by_page(continuation_token=decode_token(token))  # type: ignore[arg-type]
            try:
                page = await pages.__anext__()
                async for entity in page:
                    found.append(entity)
            except StopAsyncIteration:
                return found, None
        except ResourceNotFoundError:
            return [], None
        except AzureError as exc:
            raise StorageError(f"could not read the guest register: {type(exc).__name__}") from exc
        return found, encode_token(pages.continuation_token)

    async def page(self, size: int, token: str | None) -> tuple[list[GuestRecord], str | None]:
        # Every guest partition, and nothing else: "guest-" <= PartitionKey < "guest." ('.' follows '-').
        query = "PartitionKey ge @low and PartitionKey lt @high and RowKey eq @row"
        parameters = {"low": GUEST_PREFIX, "high": GUEST_PREFIX[:-1] + ".", "row": GUEST_ROW}
        entities, token = await self._page(query, parameters, size, token)
        return [from_entity(e, e.metadata.get("etag")) for e in entities], token

    async def schedule(self, entry: GuestDue) -> None:
        await self._table.upsert({"PartitionKey": DUE_PREFIX + entry.day, "RowKey": entry.user_id})

    async def due(self, day: str, limit: int) -> list[GuestDue]:
        entries: list[GuestDue] = []
        token: str | None = None
        while len(entries) < limit:
            page, token = await self.due_page(day, limit - len(entries), token)
            entries += page
            if token is None:
                break
        return entries[:limit]

    async def due_page(self, day: str, size: int, token: str | None) -> tuple[list[GuestDue], str | None]:
        entities, token = await self._page("PartitionKey eq @pk", {"pk": DUE_PREFIX + day}, size, token)
        return [GuestDue(day, str(e["RowKey"])) for e in entities], token

    async def unschedule(self, entries: list[GuestDue]) -> None:
        for start in range(0, len(entries), BATCH_LIMIT):
            chunk = entries[start : start + BATCH_LIMIT]
            by_day: dict[str, list[GuestDue]] = {}
            for entry in chunk:
                by_day.setdefault(entry.day, []).append(entry)
            for day, same in by_day.items():  # a transaction holds one partition
                operations = [
                    (TransactionOperation.DELETE, {"PartitionKey": DUE_PREFIX + day, "RowKey": e.user_id}) for e in same
                ]
                try:
                    await self._client.submit_transaction(operations)
                except AzureError:
                    # One entry already gone fails the whole batch; delete one by one instead.
                    for entry in same:
                        await self._table.delete(DUE_PREFIX + entry.day, entry.user_id)

    async def index_state(self, user_id: str, state: GuestState) -> None:
        await self._table.upsert({"PartitionKey": STATE_PREFIX + state.value, "RowKey": user_id})

    async def unindex_state(self, user_id: str, state: GuestState) -> None:
        await self._table.delete(STATE_PREFIX + state.value, user_id)

    async def in_state(self, state: GuestState, size: int, token: str | None) -> tuple[list[str], str | None]:
        entities, token = await self._page("PartitionKey eq @pk", {"pk": STATE_PREFIX + state.value}, size, token)
        return [str(e["RowKey"]) for e in entities], token

    async def cursor(self) -> tuple[str | None, str | None]:
        entity = await self._table.read(*CURSOR_KEY, create=False)
        if entity is None:
            return None, None
        return str(entity["day"]), entity.metadata.get("etag")

    async def advance(self, day: str, etag: str | None) -> str | None:
        entity = {"PartitionKey": CURSOR_KEY[0], "RowKey": CURSOR_KEY[1], "day": day}
        if etag is None:
            return await self._table.insert(entity)
        return await self._table.replace(entity, etag)
