"""Fixed-window counts kept in memory by each instance and reconciled through shared storage.

A ``SharedLimiter`` decides every request in memory, so a decision costs no
storage round trip (but for the first of a window on an instance, which waits for
one read of the others' counts) and there is nothing to contend on. Each instance counts its
own admissions exactly; every ``sync_every`` seconds a background task
*publishes* its counts of the keys it saw since the last round (one row per key
and instance, written unconditionally: only that instance ever writes the row)
and *reads* the other instances' rows of those keys. A request is admitted when
``own count + the others' counts as last read < limit``.

The consequences, which ``docs/abuse.md`` states as the error bound:

* one instance: exact (admits exactly ``limit`` per window per key);
* several instances: a request is refused only when that many admissions were
  really made in the window (the others' counts are real admissions, never
  estimates), so contention or a slow store can never cause a refusal;
* the overshoot is at most what the other instances admitted for the key and
  this instance had not yet read: their admissions of the last
  ``2 * (sync_every + one round)`` seconds, plus one per other instance (a key an
  instance has admitted once is not published).

If the store cannot be reached the instances go on counting alone (each then
holds the limit by itself) and the failure is logged. Keys are hashed before
they are stored; no address, IP or domain is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from azure.core.exceptions import AzureError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ..errors import StorageError
from ..storage import EnsureOnce

log = logging.getLogger(__name__)

# Keys published per round, busiest first: a flood of one-off keys (say, one per IPv6 /64) cannot turn the
# reconciliation into a storm of writes; the keys left over wait for the next round.
MAX_KEYS_PER_ROUND: Final = 1000
BATCH: Final = 100  # entities per Table transaction
# A key an instance has admitted only once is not published: most addresses sign up once, and publishing
# (then deleting) each of them would cost two writes per sign-up for nothing. The price: up to one unseen
# admission per other instance and key, added to the overshoot bound.
PUBLISH_FROM: Final = 2
# The first request of a window on an instance waits this long at most for the others' counts (one query);
# after that it is decided on what is known and the read finishes in the background.
PRIME_TIMEOUT: Final = 2.0
# Once a key has reached half its limit, rounds come this many times as often: the overshoot near the limit
# is what staleness costs, and it is worth a few more round trips for the keys that are about to be refused.
HOT_SPEEDUP: Final = 10


@dataclass(frozen=True)
class Verdict:
    """Whether a request may go on; if not, when it may try again (seconds, at least 1)."""

    allowed: bool
    retry_after: int = 0


def key_hash(key: str) -> str:
    """What is stored for a key: 128 bits of its SHA-256 (keys are IPs and domains; neither is stored)."""
    return hashlib.sha256(key.casefold().encode("utf-8")).hexdigest()[:32]


class CountStore(Protocol):
    """Where instances publish their counts of one window and read each other's."""

    async def exchange(self, kind: str, window: int, instance: str, mine: Mapping[str, int]) -> dict[str, int]:
        """Publish ``mine`` (key hash -> this instance's count in the window starting at ``window``); return
        the other instances' counts in that window, summed per key hash. Raises ``StorageError``."""
        ...

    async def forget(self, kind: str, window: int, instance: str, hashes: Iterable[str]) -> None:
        """Remove this instance's rows of a past window (best effort)."""
        ...


class TableCountStore:
    """``CountStore`` in Azure Table storage.

    One partition per kind and window (``rate-<kind>-<window start>``), one row per key and instance
    (``RowKey`` ``<key hash>.<instance>``, property ``count``). Each row has exactly one writer, which
    overwrites it unconditionally: there is no ETag and so no conflict. A round is one batch upsert per 100
    changed keys and one query of the window's partition; an instance deletes its own rows once their window
    has passed.
    """

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self._ensure = EnsureOnce()

    async def exchange(self, kind: str, window: int, instance: str, mine: Mapping[str, int]) -> dict[str, int]:
        partition = f"rate-{kind}-{window}"
        upserts = [
            (
                "upsert",
                {"PartitionKey": partition, "RowKey": f"{h}.{instance}", "count": n},
                {"mode": UpdateMode.REPLACE},
            )
            for h, n in mine.items()
        ]
        totals: dict[str, int] = {}
        try:
            await self._ensure(self._client.create_table, "rate-limit table")
            await asyncio.gather(
                *(self._client.submit_transaction(upserts[i : i + BATCH]) for i in range(0, len(upserts), BATCH))
            )
            rows = self._client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": partition}, select=["RowKey", "count"], results_per_page=1000
            )
            async for row in rows:
                h, _, who = str(row["RowKey"]).partition(".")
                if who != instance:
                    totals[h] = totals.get(h, 0) + int(row.get("count", 0))
        except AzureError as exc:
            raise StorageError(f"could not exchange rate counts: {type(exc).__name__}") from exc
        return totals

    async def forget(self, kind: str, window: int, instance: str, hashes: Iterable[str]) -> None:
        partition = f"rate-{kind}-{window}"
        deletes = [("delete", {"PartitionKey": partition, "RowKey": f"{h}.{instance}"}) for h in hashes]
        for i in range(0, len(deletes), BATCH):
            try:
                await self._client.submit_transaction(deletes[i : i + BATCH])
            except AzureError as exc:  # a row never written (or already gone) fails its batch: harmless
                log.info("abuse.rate_forget_failed kind=%s error=%s", kind, type(exc).__name__)


class MemoryCountStore:
    """``CountStore`` in memory, shared by the limiters given it (tests)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, str, str], int] = {}

    async def exchange(self, kind: str, window: int, instance: str, mine: Mapping[str, int]) -> dict[str, int]:
        for h, n in mine.items():
            self.rows[(kind, window, h, instance)] = n
        totals: dict[str, int] = {}
        for (k, w, h, who), n in self.rows.items():
            if k == kind and w == window and who != instance:
                totals[h] = totals.get(h, 0) + n
        return totals

    async def forget(self, kind: str, window: int, instance: str, hashes: Iterable[str]) -> None:
        for h in hashes:
            self.rows.pop((kind, window, h, instance), None)


class SharedLimiter:
    """Fixed windows of ``window`` seconds (aligned to the epoch, so every instance agrees on them), decided in
    memory, reconciled through ``store`` every ``sync_every`` seconds off the request path."""

    def __init__(
        self,
        store: CountStore,
        kind: str,
        window: float,
        sync_every: float,
        *,
        clock: Callable[[], float] = time.time,
        instance: str | None = None,
    ) -> None:
        self._store = store
        self._kind = kind
        self._window = window
        self._sync_every = sync_every
        self._clock = clock
        self.instance = instance or secrets.token_hex(8)
        self._start = self._window_of(clock())  # the window counted in; a request's own time moves it
        self._mine: dict[str, int] = {}
        self._others: dict[str, int] = {}
        self._published: dict[str, int] = {}
        self._once: dict[str, set[str]] = {}
        self._to_forget: list[tuple[int, list[str]]] = []
        self._last_take = float("-inf")
        self._hot_at = float("-inf")  # when a request last found its key at half its limit or more
        self._wake: asyncio.Event | None = None  # cuts a long wait short when a key turns hot
        self._task: asyncio.Task[None] | None = None
        self._priming: tuple[int, asyncio.Task[None]] | None = None

    def _window_of(self, now: float) -> int:
        return int(now // self._window * self._window)

    def _roll(self, start: int) -> None:
        """Move on to the window starting at ``start``; this instance's rows of the old one are deleted later."""
        if self._published:
            self._to_forget.append((self._start, list(self._published)))
        self._start = start
        self._mine, self._others, self._published, self._once = {}, {}, {}, {}

    async def take(self, key: str, limit: int, now: float | None = None, *, once: str | None = None) -> Verdict:
        """Count one request for ``key`` if the window has room under ``limit``; refuse it otherwise.

        Decided in memory. Only the first request of a window on this instance waits, for one read of the
        other instances' counts (at most ``PRIME_TIMEOUT``; concurrent first requests share it), so that a
        fresh instance does not admit a burst on an empty view. ``once``: an id counted at most once per
        window on this instance (a redelivered message is not counted twice).
        """
        now = self._clock() if now is None else now
        start = self._window_of(now)
        if start != self._start:  # the caller's time rules (a backward move only ever comes from a test's clock)
            self._roll(start)
        self._last_take = now
        self._ensure_running()
        await self._prime()
        h = key_hash(key)
        if once is not None and once in self._once.get(h, ()):
            return Verdict(True)
        mine = self._mine.get(h, 0)
        if 2 * (mine + self._others.get(h, 0)) >= limit:
            if now - self._hot_at >= self._sync_every and self._wake is not None:
                self._wake.set()  # it has just turned hot: start the short rounds now, not after the long wait
            self._hot_at = now
        if mine + self._others.get(h, 0) >= limit:
            return Verdict(False, max(1, int(self._start + self._window - now + 0.999)))
        self._mine[h] = mine + 1
        if once is not None:
            self._once.setdefault(h, set()).add(once)
        return Verdict(True)

    async def _prime(self) -> None:
        """Read the others' counts once per window before deciding on them (only the first request waits)."""
        loop = asyncio.get_running_loop()
        if self._priming is None or self._priming[0] != self._start or self._priming[1].get_loop() is not loop:
            self._priming = (self._start, loop.create_task(self._exchange()))
        task = self._priming[1]
        if not task.done():  # a slow read: decide on what is known after the timeout; the read goes on
            await asyncio.wait({task}, timeout=PRIME_TIMEOUT)

    def known(self, key: str) -> int:
        """The admissions for ``key`` in the current window this instance knows of (its own and the others')."""
        h = key_hash(key)
        return self._mine.get(h, 0) + self._others.get(h, 0)

    def _ensure_running(self) -> None:
        """Start the reconciliation on the running loop (again, if an earlier loop has gone)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(self._wake))

    async def _run(self, wake: asyncio.Event) -> None:
        while True:
            hot = self._clock() - self._hot_at < self._sync_every
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow the task's cancellation.
            waiter = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=self._sync_every / HOT_SPEEDUP if hot else self._sync_every)
            finally:
                waiter.cancel()
            wake.clear()
            try:
                await self.sync()
            except Exception:  # never let the reconciliation die: counting alone is the fallback
                log.exception("abuse.rate_sync_failed kind=%s", self._kind)

    async def sync(self) -> None:
        """One round: publish this instance's changed counts, read every other instance's counts of the
        current window, and delete this instance's rows of past windows. Idle for a window: nothing."""
        await self._exchange()
        forget, self._to_forget = self._to_forget, []
        for window, hashes in forget:
            await self._store.forget(self._kind, window, self.instance, hashes)

    async def _exchange(self) -> None:
        now = self._clock()
        start = self._window_of(now)
        if start > self._start:
            self._roll(start)
        if now - self._last_take > self._window:
            return
        changed = [h for h, n in self._mine.items() if n >= PUBLISH_FROM and self._published.get(h) != n]
        changed.sort(key=lambda h: self._mine[h], reverse=True)
        sent = {h: self._mine[h] for h in changed[:MAX_KEYS_PER_ROUND]}
        try:
            totals = await self._store.exchange(self._kind, start, self.instance, sent)
        except StorageError as exc:
            log.warning("abuse.rate_sync_unavailable kind=%s error=%s", self._kind, exc)
            return
        if self._start != start:  # the window turned while we waited: these figures are of the old one
            self._to_forget.append((start, list(sent)))
            return
        self._published.update(sent)
        for h, n in totals.items():
            # Within a window the others' counts only grow: a read that lags an earlier one changes nothing.
            self._others[h] = max(self._others.get(h, 0), n)

    async def aclose(self) -> None:
        """Stop the reconciliation after one last round, so that this instance's counts are published."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.sync()
