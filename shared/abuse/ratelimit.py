"""Rate limits per client IP and per email domain, in fixed windows counted in Table storage.

One entity per key and window (``PartitionKey`` ``rate-<kind>-<sha256 of key>``,
``RowKey`` the window's start), incremented with ETag-conditional writes so
concurrent instances never lose a count. Keys are hashed: neither addresses nor
IPs are stored. If storage cannot be reached the request is let through and the
fact logged (intake itself would answer 503 then); a counter so contended that no
conditional write lands is a burst, and is refused like a passed limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ..errors import StorageError
from ..storage import EnsureOnce

log = logging.getLogger(__name__)

MAX_ROUNDS: Final = 8


def client_ip(headers: Mapping[str, str], trusted_hops: int) -> str | None:
    """The client's address from ``X-Forwarded-For``, counting ``trusted_hops`` proxies from the right.

    Azure's front end appends the address it saw (``ip:port``); entries to the left of the trusted ones
    are whatever the client claimed and are never used.
    """
    raw = next((v for k, v in headers.items() if k.lower() == "x-forwarded-for"), "")
    hops = [h.strip() for h in raw.split(",") if h.strip()]
    if trusted_hops < 1 or len(hops) < trusted_hops:
        return None
    candidate = hops[-trusted_hops]
    if candidate.startswith("["):  # [v6]:port
        candidate = candidate[1:].split("]", 1)[0]
    elif candidate.count(":") == 1:  # v4:port
        candidate = candidate.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


@dataclass(frozen=True)
class Verdict:
    """Whether a request may go on; if not, when it may try again."""

    allowed: bool
    retry_after: int = 0
    kind: str = ""


class _Contended(Exception):
    """A counter kept changing under every conditional write."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


class RateLimiter(Protocol):
    """Counts one request against each key; refuses when a window's limit is passed."""

    async def hit(self, keys: Mapping[str, tuple[str, int]]) -> Verdict:
        """``keys`` maps a kind (``ip``, ``domain``) to (key, limit per window)."""
        ...


class TableRateLimiter:
    """``RateLimiter`` on Azure Table storage (fixed windows of ``window`` seconds)."""

    def __init__(self, client: TableClient, window: float, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._window = window
        self._clock = clock
        self._ensure = EnsureOnce()

    async def hit(self, keys: Mapping[str, tuple[str, int]]) -> Verdict:
        now = self._clock()
        start = int(now // self._window * self._window)
        retry_after = max(1, int(start + self._window - now + 0.999))
        try:
            await self._ensure(self._client.create_table, "rate-limit table")
            # The counters are independent entities: count them together, one round trip of latency.
            counts = await asyncio.gather(*(self._increment(kind, key, start) for kind, (key, _) in keys.items()))
            for (kind, (_, limit)), count in zip(keys.items(), counts, strict=True):
                if count > limit:
                    log.info("abuse.rate_limited kind=%s count=%s limit=%s", kind, count, limit)
                    return Verdict(False, retry_after, kind)
        except _Contended as exc:
            # So many posts at once that the counter could not be written: that is a burst, not a person.
            log.info("abuse.rate_limited kind=%s contended=true", exc.kind)
            return Verdict(False, retry_after, exc.kind)
        except (AzureError, StorageError) as exc:
            log.warning("abuse.rate_limit_unavailable error=%s", type(exc).__name__)
        return Verdict(True)

    async def _increment(self, kind: str, key: str, start: int) -> int:
        partition = f"rate-{kind}-" + hashlib.sha256(key.casefold().encode("utf-8")).hexdigest()
        row = str(start)
        for _ in range(MAX_ROUNDS):
            try:
                entity = await self._client.get_entity(partition, row)
            except ResourceNotFoundError:
                try:
                    await self._client.create_entity({"PartitionKey": partition, "RowKey": row, "count": 1})
                    return 1
                except ResourceExistsError:
                    continue
            count = int(entity.get("count", 0)) + 1
            try:
                await self._client.update_entity(
                    {"PartitionKey": partition, "RowKey": row, "count": count},
                    mode=UpdateMode.REPLACE,
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return count
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        raise _Contended(kind)


class MemoryRateLimiter:
    """``RateLimiter`` in memory (tests)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    async def hit(self, keys: Mapping[str, tuple[str, int]]) -> Verdict:
        for kind, (key, limit) in keys.items():
            self.counts[(kind, key)] = self.counts.get((kind, key), 0) + 1
            if self.counts[(kind, key)] > limit:
                return Verdict(False, 60, kind)
        return Verdict(True)
