"""The guest register in Azure Table storage, behind a small protocol.

It shares the lifecycle's table (no new setting), in partitions no sign-up key can take::

    PartitionKey            RowKey     what
    guest-<user object id>  guest      a registered guest (``GuestRecord``)
    guestdue-<YYYYMMDD>     <user id>  the due index: look at that guest on or after that day (UTC)
    guestsweep              cursor     the last due day a guest sweep finished

One partition per due day, so a sweep reads the days that have come, in bounded pages, and never scans
the table. A record's ``dueAt`` is the truth: an index entry for another day is stale and is dropped by
whoever reads it. Writes after creation are ETag-conditional (``ConcurrencyConflict`` on a lost race).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TransactionOperation, UpdateMode
from azure.data.tables.aio import TableClient

from ..errors import ConcurrencyConflict, StorageError
from ..storage import EnsureOnce
from .records import GuestDue, GuestRecord, GuestState

GUEST_PREFIX: Final = "guest-"
GUEST_ROW: Final = "guest"
DUE_PREFIX: Final = "guestdue-"
DAY_FORMAT: Final = "%Y%m%d"
CURSOR_KEY: Final = ("guestsweep", "cursor")
BATCH_LIMIT: Final = 100  # an entity group transaction holds at most 100 operations
MAX_PAGE: Final = 1000  # Table storage returns at most 1,000 entities per page


def due_day(moment: datetime) -> str:
    """The due-index day ``moment`` falls in (UTC)."""
    return moment.astimezone(UTC).strftime(DAY_FORMAT)


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
        updated_at=_moment(entity.get("updatedAt")),
        etag=etag,
    )


class TableGuestRegister:
    """``GuestRegister`` on Azure Table storage (or Azurite)."""

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self._ensure = EnsureOnce()

    async def _ready(self) -> None:
        await self._ensure(self._client.create_table, "table")

    async def insert(self, record: GuestRecord) -> GuestRecord | None:
        await self._ready()
        try:
            meta = await self._client.create_entity(to_entity(record))
        except ResourceExistsError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not register guest: {type(exc).__name__}") from exc
        return record.evolve(etag=str(meta.get("etag")))

    # Reads never create the table (a dry run writes nothing): a missing table reads as empty.
    async def get(self, user_id: str) -> GuestRecord | None:
        try:
            entity = await self._client.get_entity(GUEST_PREFIX + user_id, GUEST_ROW)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not read a registered guest: {type(exc).__name__}") from exc
        return from_entity(entity, entity.metadata.get("etag"))

    async def replace(self, record: GuestRecord) -> GuestRecord:
        if record.etag is None:
            raise ValueError("replace needs the ETag the record was read with")
        try:
            meta = await self._client.update_entity(
                to_entity(record),
                mode=UpdateMode.REPLACE,
                etag=record.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrencyConflict(f"guest {record.user_id} changed or vanished") from exc
        except AzureError as exc:
            raise StorageError(f"could not update a registered guest: {type(exc).__name__}") from exc
        return record.evolve(etag=str(meta.get("etag")))

    async def page(self, size: int, token: str | None) -> tuple[list[GuestRecord], str | None]:
        from ..lifecycle.store import decode_token, encode_token

        # Every guest partition, and nothing else: "guest-" <= PartitionKey < "guest." ('.' follows '-').
        query = "PartitionKey ge @low and PartitionKey lt @high and RowKey eq @row"
        parameters = {"low": GUEST_PREFIX, "high": GUEST_PREFIX[:-1] + ".", "row": GUEST_ROW}
        try:
            pages: Any = self._client.query_entities(
                query, parameters=parameters, results_per_page=min(size, MAX_PAGE)
            ).by_page(continuation_token=decode_token(token))  # type: ignore[arg-type]
            found: list[GuestRecord] = []
            try:
                page = await pages.__anext__()
                async for entity in page:
                    found.append(from_entity(entity, entity.metadata.get("etag")))
            except StopAsyncIteration:
                return found, None
        except ResourceNotFoundError:
            return [], None
        except AzureError as exc:
            raise StorageError(f"could not list registered guests: {type(exc).__name__}") from exc
        return found, encode_token(pages.continuation_token)

    async def schedule(self, entry: GuestDue) -> None:
        await self._ready()
        entity = {"PartitionKey": DUE_PREFIX + entry.day, "RowKey": entry.user_id}
        try:
            await self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise StorageError(f"could not schedule a guest: {type(exc).__name__}") from exc

    async def due(self, day: str, limit: int) -> list[GuestDue]:
        entries: list[GuestDue] = []
        try:
            pages = self._client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": DUE_PREFIX + day}, results_per_page=min(limit, MAX_PAGE)
            ).by_page()
            async for page in pages:
                async for entity in page:
                    entries.append(GuestDue(day, str(entity["RowKey"])))
                    if len(entries) >= limit:
                        return entries
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise StorageError(f"could not read the guests due on {day}: {type(exc).__name__}") from exc
        return entries

    async def unschedule(self, entries: list[GuestDue]) -> None:
        for start in range(0, len(entries), BATCH_LIMIT):
            chunk = entries[start : start + BATCH_LIMIT]
            operations = [
                (TransactionOperation.DELETE, {"PartitionKey": DUE_PREFIX + e.day, "RowKey": e.user_id}) for e in chunk
            ]
            try:
                await self._client.submit_transaction(operations)
            except AzureError:
                # One entry already gone fails the whole batch; delete one by one instead.
                for entry in chunk:
                    try:
                        await self._client.delete_entity(DUE_PREFIX + entry.day, entry.user_id)
                    except ResourceNotFoundError:
                        pass
                    except AzureError as exc:
                        raise StorageError(f"could not unschedule a guest: {type(exc).__name__}") from exc

    async def cursor(self) -> tuple[str | None, str | None]:
        try:
            entity = await self._client.get_entity(*CURSOR_KEY)
        except ResourceNotFoundError:
            return None, None
        except AzureError as exc:
            raise StorageError(f"could not read the guest sweep's cursor: {type(exc).__name__}") from exc
        return str(entity["day"]), entity.metadata.get("etag")

    async def advance(self, day: str, etag: str | None) -> str | None:
        await self._ready()
        entity = {"PartitionKey": CURSOR_KEY[0], "RowKey": CURSOR_KEY[1], "day": day}
        try:
            if etag is None:
                meta = await self._client.create_entity(entity)
            else:
                meta = await self._client.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
        except AzureError as exc:
            raise StorageError(f"could not move the guest sweep's cursor: {type(exc).__name__}") from exc
        return str(meta.get("etag"))
