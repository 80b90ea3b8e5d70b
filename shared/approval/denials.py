"""Remembered denials: an address an approver denied is refused at intake until the memory lapses.

One entity per address in the sign-up table, keyed by the address's hash like
the address claim (``denial-<sha256>``), so the address itself is not stored
again and a lookup is one point read.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Final, Protocol

from azure.core.exceptions import AzureError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ..errors import StorageError
from ..lifecycle.store import _Table

DENIAL_PREFIX: Final = "denial-"
DENIAL_ROW: Final = "denial"


def denial_key(email: str) -> str:
    """The partition of an address's denial (case-insensitive, hashed)."""
    return DENIAL_PREFIX + hashlib.sha256(email.casefold().encode("utf-8")).hexdigest()


class DenialMemory(Protocol):
    """Which addresses were denied, and until when that holds."""

    async def remember(self, email: str, signup_id: str, until: datetime) -> None:
        """Refuse ``email`` until ``until`` (a later denial extends it)."""
        ...

    async def denied_until(self, email: str) -> tuple[datetime, str] | None:
        """Until when ``email`` stays refused and which sign-up was denied, or None."""
        ...


class TableDenialMemory:
    """``DenialMemory`` on Azure Table storage."""

    def __init__(self, client: TableClient) -> None:
        self._table = _Table(client)

    async def remember(self, email: str, signup_id: str, until: datetime) -> None:
        await self._table.ready()
        entity = {"PartitionKey": denial_key(email), "RowKey": DENIAL_ROW, "until": until, "signupId": signup_id}
        try:
            await self._table.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise StorageError(f"could not remember the denial of {signup_id}: {type(exc).__name__}") from exc

    async def denied_until(self, email: str) -> tuple[datetime, str] | None:
        entity = await self._table.read(denial_key(email), DENIAL_ROW)
        if entity is None or not isinstance(entity.get("until"), datetime):
            return None
        return entity["until"], str(entity.get("signupId") or "")


class MemoryDenials:
    """``DenialMemory`` in memory (tests)."""

    def __init__(self) -> None:
        self.until: dict[str, tuple[datetime, str]] = {}

    async def remember(self, email: str, signup_id: str, until: datetime) -> None:
        self.until[denial_key(email)] = (until, signup_id)

    async def denied_until(self, email: str) -> tuple[datetime, str] | None:
        return self.until.get(denial_key(email))
