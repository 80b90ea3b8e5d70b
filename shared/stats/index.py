"""The day index: one Table partition per intake day, a row per request and a few summary shards.

In the lifecycle's table, next to the records::

    PartitionKey      RowKey                 what
    day-<YYYYMMDD>    a-<id>                 a request's row: status, kind, domain, profile, error code,
                                             seconds to invite, updatedAt, the SHA-256 of its address
    day-<YYYYMMDD>    d-<9999-HHMM>-<id>     the same row, keyed for newest-first listing
    day-<YYYYMMDD>    s-<0..15>               a summary shard: counts of the day's rows (by status,
                                             time-to-invite bucket, error code, doubt, conversions)

The day is that of the id's minute (ids begin ``YYYYMMDDHHMM``), so every update of a request lands in the
same partition, and each update is one entity-group transaction there: the request's row (ETag-conditional,
or created) and its shard's counts (ETag-conditional: minus the old row's contribution, plus the new one's).
Row and summary therefore never disagree; a lost race re-reads and tries again. An update that changes
nothing the index keeps (the same status again) writes nothing. Rows never hold the address itself.

A request is counted from its first lifecycle write (its admission) on: intake's insert stays one write, and
a record never written by the lifecycle (``write_token`` unset: still ``received``, or refused at intake by
the policy) is not in the index.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ..errors import ConcurrencyConflict, StorageError
from ..lifecycle.models import Signup, Status, id_minute
from ..storage import EnsureOnce

DAY_PREFIX: Final = "day-"
ASCENDING: Final = "a-"
DESCENDING: Final = "d-"
SUMMARY: Final = "s-"
SHARDS: Final = 16
MAX_ROUNDS: Final = 30
# Upper bounds (seconds) of the time-to-invite buckets; one more bucket holds everything above the last.
TTI_BOUNDS: Final = (5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
STATUS_KEY: Final = "status:"
TTI_KEY: Final = "tti:"
ERROR_KEY: Final = "error:"
CONVERSION_KEY: Final = "conversion:"
DOUBT_KEY: Final = "doubt"


def address_hash(email: str) -> str:
    """The SHA-256 of the casefolded address: what the index keeps, and how ``q`` finds a request."""
    return hashlib.sha256(email.strip().casefold().encode("utf-8")).hexdigest()


def day_of(signup_id: str, created_at: datetime) -> date:
    """The intake day a request is indexed under: its id's minute (the creation time for older ids)."""
    return (id_minute(signup_id) or created_at).astimezone(UTC).date()


def partition(day: date) -> str:
    """The day's partition."""
    return DAY_PREFIX + day.strftime("%Y%m%d")


def shard_of(signup_id: str) -> int:
    """The summary shard a request is counted in (fixed per id, so its old contribution is found again)."""
    return int(hashlib.sha256(signup_id.encode("utf-8")).hexdigest()[:8], 16) % SHARDS


def tti_bucket(seconds: float) -> int:
    """The index of the time-to-invite bucket ``seconds`` falls in."""
    for i, bound in enumerate(TTI_BOUNDS):
        if seconds <= bound:
            return i
    return len(TTI_BOUNDS)


@dataclass(frozen=True)
class IndexRow:
    """What the index keeps of one request."""

    id: str
    day: date
    status: str
    kind: str  # signup or conversion
    domain: str
    profile: str | None
    code: str | None
    tti: float | None  # seconds from intake to invited
    doubt: bool  # retrying while Graph may have acted
    address: str | None
    updated_at: datetime

    def contribution(self) -> Counter[str]:
        """The counts this row adds to its shard."""
        counts: Counter[str] = Counter({STATUS_KEY + self.status: 1})
        if self.status == Status.INVITED.value and self.tti is not None:
            counts[TTI_KEY + str(tti_bucket(self.tti))] += 1
        if self.status == Status.FAILED.value:
            counts[ERROR_KEY + (self.code or "unknown")] += 1
        if self.kind == "conversion":
            counts[CONVERSION_KEY + self.status] += 1
        if self.doubt:
            counts[DOUBT_KEY] += 1
        return counts

    def same_as(self, other: IndexRow) -> bool:
        """Equal in everything the index keeps but the time of the write."""
        return {**self.__dict__, "updated_at": None} == {**other.__dict__, "updated_at": None}

    def entity(self, row_key: str) -> dict[str, Any]:
        """The Table entity under ``row_key``."""
        entity = {
            "PartitionKey": partition(self.day),
            "RowKey": row_key,
            "id": self.id,
            "status": self.status,
            "kind": self.kind,
            "domain": self.domain,
            "profile": self.profile,
            "code": self.code,
            "tti": self.tti,
            "doubt": self.doubt,
            "addr": self.address,
            "updatedAt": self.updated_at,
        }
        return {k: v for k, v in entity.items() if v is not None}

    @property
    def keys(self) -> tuple[str, str]:
        """The ascending and the descending row key."""
        minute = id_minute(self.id)
        hhmm = minute.hour * 100 + minute.minute if minute else 0
        return ASCENDING + self.id, f"{DESCENDING}{9999 - hhmm:04d}-{self.id}"


def row_of(signup: Signup) -> IndexRow:
    """The index row of a record as stored."""
    tti = None
    if signup.status is Status.INVITED:
        tti = max(0.0, ((signup.invited_at or signup.updated_at) - signup.created_at).total_seconds())
    return IndexRow(
        id=signup.id,
        day=day_of(signup.id, signup.created_at),
        status=signup.status.value,
        kind="conversion" if signup.conversion is not None else "signup",
        domain=signup.domain.casefold() if signup.email else "",
        profile=signup.policy_profile,
        code=signup.error_code,
        tti=round(tti, 3) if tti is not None else None,
        doubt=signup.status is Status.RETRYING and signup.maybe_invited,
        address=address_hash(signup.email) if signup.email else None,
        updated_at=signup.updated_at,
    )


def row_from(entity: Mapping[str, Any]) -> IndexRow:
    """An index row back from its entity."""
    tti = entity.get("tti")
    updated = entity.get("updatedAt")
    return IndexRow(
        id=str(entity["id"]),
        day=datetime.strptime(str(entity["PartitionKey"])[len(DAY_PREFIX) :], "%Y%m%d").date(),
        status=str(entity["status"]),
        kind=str(entity.get("kind", "signup")),
        domain=str(entity.get("domain", "")),
        profile=entity.get("profile"),
        code=entity.get("code"),
        tti=float(tti) if tti is not None else None,
        doubt=bool(entity.get("doubt", False)),
        address=entity.get("addr"),
        updated_at=updated if isinstance(updated, datetime) else datetime.min.replace(tzinfo=UTC),
    )


def counts_of(entity: Mapping[str, Any] | None) -> Counter[str]:
    """A summary shard's counts."""
    if entity is None or not entity.get("counts"):
        return Counter()
    return Counter({str(k): int(v) for k, v in json.loads(entity["counts"]).items()})


def _conflict(exc: AzureError) -> bool:
    return getattr(exc, "status_code", None) in (409, 412)


class TableDayIndex:
    """The day index on Azure Table storage: the lifecycle's ``RecordIndex`` and the stats' source."""

    def __init__(self, client: TableClient) -> None:
        self.client = client
        self._ensure = EnsureOnce()

    async def ready(self) -> None:
        """Create the table on first use."""
        await self._ensure(self.client.create_table, "table")

    async def _read(self, pk: str, rk: str) -> Any | None:
        try:
            return await self.client.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not read index row {pk}/{rk}: {type(exc).__name__}") from exc

    async def indexed(self, signup: Signup, *, force: bool = False) -> bool:
        """Bring the request's row and its shard in step with ``signup`` (one transaction); True when it wrote.

        An update older than the row (by ``updatedAt``: a slow caller overtaken by a later write) is ignored
        unless ``force`` (the sweeper, with a final record it has just read).
        """
        if signup.write_token is None:
            return False  # never written by the lifecycle: counted from its admission on
        await self.ready()
        row = row_of(signup)
        pk = partition(row.day)
        ascending, descending = row.keys
        shard_key = f"{SUMMARY}{shard_of(row.id)}"
        for round_ in range(MAX_ROUNDS):
            stored, shard = await asyncio.gather(self._read(pk, ascending), self._read(pk, shard_key))
            old = row_from(stored) if stored is not None else None
            if old is not None and (old.same_as(row) or (not force and old.updated_at > row.updated_at)):
                return False
            delta = row.contribution()
            delta.subtract(old.contribution() if old is not None else Counter())
            operations: list[Any] = []
            if stored is not None:
                operations.append(("update", row.entity(ascending), _if_match(stored)))
            else:
                operations.append(("create", row.entity(ascending)))
            operations.append(("upsert", row.entity(descending), {"mode": UpdateMode.REPLACE}))
            if any(delta.values()):
                counts = counts_of(shard)
                counts.update(delta)
                summary = {
                    "PartitionKey": pk,
                    "RowKey": shard_key,
                    "counts": json.dumps({k: v for k, v in sorted(counts.items()) if v}, separators=(",", ":")),
                }
                operations.append(("update", summary, _if_match(shard)) if shard is not None else ("create", summary))
            try:
                await self.client.submit_transaction(operations)
                return True
            except AzureError as exc:
                if not _conflict(exc):
                    raise StorageError(f"could not index sign-up {row.id}: {type(exc).__name__}") from exc
            # A lost race: back off with full jitter, so contending writers of one shard spread out.
            await asyncio.sleep(random.uniform(0, min(0.5, 0.01 * 2**round_)))  # noqa: S311
        raise ConcurrencyConflict(f"the day index of sign-up {row.id} kept changing")

    async def summary(self, day: date) -> Counter[str]:
        """The day's counts: its summary shards added up (one ranged query)."""
        await self.ready()
        totals: Counter[str] = Counter()
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        parameters = {"pk": partition(day), "lo": SUMMARY, "hi": SUMMARY[:-1] + "."}
        try:
            async for entity in self.client.query_entities(query, parameters=parameters):
                totals.update(counts_of(entity))
        except AzureError as exc:
            raise StorageError(f"could not read the summary of {day}: {type(exc).__name__}") from exc
        return totals

    async def row(self, signup_id: str, created_at: datetime) -> IndexRow | None:
        """A request's row, or None when it is not indexed."""
        await self.ready()
        entity = await self._read(partition(day_of(signup_id, created_at)), ASCENDING + signup_id)
        return row_from(entity) if entity is not None else None


def _if_match(entity: Any) -> dict[str, Any]:
    etag = entity.metadata["etag"]
    return {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
