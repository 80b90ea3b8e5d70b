"""One Graph write budget shared by every instance, kept in the Table storage the app already has.

Graph's limits are per app and tenant, not per instance: 3,000 writes per 150 s,
and 150 requests to ``/invitations`` per 5 s per tenant. Each limit is one
entity (``PartitionKey`` ``budget``, ``RowKey`` the limit's name) holding a
model of Graph's token bucket (less headroom), kept as the generic cell rate
algorithm::

    tat           when the model's bucket is next empty (epoch seconds): the slots
                  before it are spoken for; it lags behind the clock while nobody
                  writes, which refills the bucket, up to full after one window
    blockedUntil  Graph said 429: no slot before this

The model is a lower bound of Graph's bucket, never an estimate. Graph's bucket
is taken to be a plain token bucket (full at most, refilled continuously, never
below zero), so the model may assume only tokens that bucket surely has: a
schedule never written is an empty bucket (nobody knows what was spent before),
the bucket is full only after a whole window with no slot spoken for, and a
token is spent only once the model has earned it. Writes admitted so never
overtake Graph's bucket, whatever state a previous drain left: in any span of
``t`` seconds at most ``capacity + rate * t`` of them reach Graph. See
docs/graph-and-pacing.md for the overshoot this replaced.

An instance reserves a batch of slots (about a second of the rate) with an
ETag-conditional update and spends each slot at its end: storage calls stay a
small fraction of Graph calls, and an instance that dies holds at most about a
second of budget. Reservations queue: an instance that asks while others wait
gets the slots after theirs (up to ``horizon`` ahead), so saturated instances
take turns and none is starved. A batch not spent within ``horizon`` of its
last slot is dropped (it is counted, so dropping it is safe; spending it after
an idle spell is not). The process-local ``WritePacer`` stays in front: one
instance's concurrent invocations share its batch.

* Clock skew: slots are absolute times, so a clock that runs behind spends its
  slots late (harmless) and one that runs ahead spends them early by its skew.
  The headroom covers that, and the jitter of the way to Graph: up to
  ``headroom * window`` seconds in all (3.75 s at Graph's 150 s window).
  A lost ETag race re-reads and tries again after a short random pause.
* A 429 anywhere sets ``blockedUntil`` and empties the model's bucket (the
  slots already handed out stay counted); every instance reads it with its next
  batch and pauses, without meeting its own 429.
* Storage slow or unreachable: Graph writes never stop. The instance falls back
  to a conservative local share (``fallback_fraction`` of the rate, the budget
  divided by the expected instance count) until storage answers again, and logs
  that it did.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ..errors import StorageError, WriteDeferred
from ..storage import EnsureOnce

log = logging.getLogger(__name__)

PARTITION: Final = "budget"
MAX_ROUNDS: Final = 8
# The limits every write is paced against: the app's writes, and any request on /invitations.
WRITES: Final = "writes"
INVITATIONS: Final = "invitations"
USAGE_LOG_EVERY: Final = 10  # batches between two budget.usage log lines (the scale benchmark reads them)


@dataclass(frozen=True)
class BucketState:
    """A shared schedule as stored, with the ETag it was read with."""

    tat: float
    blocked_until: float = 0.0
    etag: str | None = None


class BudgetStore(Protocol):
    """Where shared schedules live (Table storage; a fake in tests)."""

    async def read(self, name: str) -> BucketState | None:
        """The schedule, or None when it was never written."""
        ...

    async def write(self, name: str, state: BucketState) -> str | None:
        """Write if unchanged since read (insert when ``state.etag`` is None); the new ETag, None on a lost race."""
        ...


@dataclass(frozen=True)
class Grant:
    """What one take got: ``tokens`` slots from ``start`` on, each spent at its end; or none, and when to ask
    again."""

    tokens: int
    start: float  # the first slot begins; slot i may be spent from start + (i + 1) / rate
    shared: bool  # False: storage was unreachable and the local fallback share answered
    retry_at: float = 0.0  # no tokens: when to ask again; tokens: when what is left of them expires


class SharedBucket:
    """One shared limit: ``budget`` requests per ``window`` seconds across every instance."""

    def __init__(
        self,
        store: BudgetStore,
        name: str,
        budget: int,
        window: float,
        *,
        headroom: float = 0.025,
        horizon: float = 3.0,
        fallback_fraction: float = 0.25,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if budget <= 0 or window <= 0 or not 0 <= headroom < 1 or not 0 < fallback_fraction <= 1:
            raise ValueError("budget and window must be positive, headroom in [0, 1), fallback in (0, 1]")
        self.name = name
        self.capacity = budget * (1 - headroom)
        self.rate = self.capacity / window
        self.window = window
        self.horizon = horizon
        self.fallback_rate = self.rate * fallback_fraction
        # About a second of the rate: all an instance that dies can take with it.
        self.max_batch = max(1, math.ceil(self.rate))
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._fallback_stamp: float | None = None
        self.storage_calls = 0

    async def take(self, want: int) -> Grant:
        """Reserve up to ``want`` slots (at most ``max_batch``); never raises for storage trouble."""
        want = max(1, min(want, self.max_batch))
        try:
            for _ in range(MAX_ROUNDS):
                now = self._clock()
                self.storage_calls += 1
                stored = await self._store.read(self.name)
                # A schedule never written starts now with an empty bucket, like a new process: it cannot
                # know what was spent before. Idle time refills it, up to the bucket's size after a window.
                tat = stored.tat if stored else now
                blocked = stored.blocked_until if stored else 0.0
                # The model's bucket holds a token only once it has earned it: each slot of the batch is
                # spent at its own end, never the whole batch at its start (that runs a batch ahead).
                first = max(tat, now - self.window, blocked)
                if first - now > self.horizon:
                    return self._recovered(Grant(0, first, True, first - self.horizon))
                usable = first + want / self.rate
                after = BucketState(usable, blocked, stored.etag if stored else None)
                self.storage_calls += 1
                if await self._store.write(self.name, after) is not None:
                    return self._recovered(Grant(want, first, True, max(usable, now) + self.expiry()))
                await self._sleep(0.01 + 0.04 * self._jitter())  # lost a race: let the winner's write settle
            now = self._clock()
            return Grant(0, now, True, now + 1.0 / self.rate)
        except StorageError as exc:
            return self._fallback(want, exc)

    def expiry(self) -> float:
        """How long after its last slot (or the take) a batch may still be spent; what is left is dropped.

        A token held long after its time may be spent when Graph's bucket has refilled to its top meanwhile
        (after an idle spell): the refill it missed is lost, and the model, which counted the token at its
        time, overtakes the real bucket. Long enough to wait for the other limit's batch (the horizon).
        """
        return self.horizon

    def _recovered(self, grant: Grant) -> Grant:
        if self._fallback_stamp is not None:
            log.warning("budget.shared_again name=%s", self.name)
            self._fallback_stamp = None
        return grant

    def _fallback(self, want: int, exc: StorageError) -> Grant:
        """Storage unreachable: hand out the conservative local share of the rate since the last fallback."""
        now = self._clock()
        if self._fallback_stamp is None:
            log.warning(
                "budget.local_fallback name=%s rate=%.2f/s error=%s", self.name, self.fallback_rate, type(exc).__name__
            )
            self._fallback_stamp = now - 1.0 / self.fallback_rate  # one token now, then the share's rate
        earned = math.floor((now - self._fallback_stamp) * self.fallback_rate)
        granted = min(want, earned)
        self._fallback_stamp += granted / self.fallback_rate
        if not granted:
            return Grant(0, now, False, self._fallback_stamp + 1.0 / self.fallback_rate)
        # Earned already: the first slot is due now, the others at the rate, like any batch.
        return Grant(granted, now - 1.0 / self.rate, False, now + granted / self.rate + self.expiry())

    async def block(self, until: float) -> None:
        """Graph answered 429: no instance gets a slot before ``until``."""
        try:
            for _ in range(MAX_ROUNDS):
                now = self._clock()
                self.storage_calls += 1
                stored = await self._store.read(self.name)
                if stored is not None and stored.blocked_until >= until:
                    return
                # Graph's bucket is empty now: no slot before ``until``, and the slots already handed out
                # stay counted (instances that hold them will still spend them).
                self.storage_calls += 1
                tat = max(stored.tat if stored else now, until)
                blocked = BucketState(tat, until, stored.etag if stored else None)
                if await self._store.write(self.name, blocked) is not None:
                    log.warning("budget.blocked name=%s for=%.1f", self.name, until - now)
                    return
        except StorageError as exc:
            log.warning("budget.block_not_shared name=%s error=%s", self.name, type(exc).__name__)


@dataclass
class _Pool:
    """Slots this process holds of one shared bucket."""

    tokens: int = 0
    due: float = 0.0  # when the next slot may be spent
    interval: float = 0.0
    expires: float = 0.0


class SharedGate:
    """The process's door to the shared buckets: its concurrent invocations share its batches.

    ``acquire`` takes one slot of each named bucket, first come first served (an
    ``asyncio.Lock`` wakes its waiters in order), fetching a new batch when the
    process has none left and waiting for the batch's start. It raises
    ``WriteDeferred`` instead of waiting longer than ``max_wait``: nothing was sent,
    and the work can go back on the queue.
    """

    def __init__(
        self,
        buckets: Mapping[str, SharedBucket],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.buckets = dict(buckets)
        self._pools = {name: _Pool() for name in self.buckets}
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._batches = 0

    async def acquire(self, names: Sequence[str], max_wait: float | None = None) -> float:
        """One slot of each bucket in ``names``; the seconds waited.

        The slots are reserved under the lock and waited for outside it: invocations sleep side by side until
        their own slots are due, rather than handing the lock on once per slot.
        """
        started = self._clock()
        async with self._lock:
            due = await self._reserve(names, started, max_wait)
        await self._wait_until(due, started, None)  # within the bound: _reserve checked it
        return self._clock() - started

    async def _reserve(self, names: Sequence[str], started: float, max_wait: float | None) -> float:
        """Under the lock: spend the next slot of every named pool (new batches as needed); when all are due."""
        while True:
            for name in names:
                bucket, pool = self.buckets[name], self._pools[name]
                if pool.tokens and self._clock() > pool.expires:
                    pool.tokens = 0  # held past its time: spending it now could overtake Graph's bucket
                while pool.tokens == 0:
                    grant = await bucket.take(bucket.max_batch)
                    self._batches += 1
                    if self._batches % USAGE_LOG_EVERY == 0:
                        log.info("budget.usage storage_calls=%s batches=%s", self.storage_calls, self._batches)
                    if grant.tokens:
                        pool.tokens, pool.interval, pool.expires = grant.tokens, 1.0 / bucket.rate, grant.retry_at
                        pool.due = grant.start + pool.interval
                        break
                    await self._wait_until(grant.retry_at, started, max_wait)
            # Taking one pool's batch awaited storage: another pool may have expired meanwhile.
            if all(self._pools[n].tokens > 0 and self._clock() <= self._pools[n].expires for n in names):
                break
        due = max(self._pools[name].due for name in names)
        if max_wait is not None and due - started > max_wait:
            raise WriteDeferred(retry_after=due - self._clock())
        for name in names:
            pool = self._pools[name]
            pool.tokens -= 1
            pool.due += pool.interval
        return due

    async def _wait_until(self, moment: float, started: float, max_wait: float | None) -> None:
        wait = moment - self._clock()
        if wait <= 0:
            return
        if max_wait is not None and moment - started > max_wait:
            raise WriteDeferred(retry_after=moment - self._clock())
        await self._sleep(wait)

    async def throttled(self, retry_after: float) -> None:
        """Graph answered 429: drop the slots held and tell every instance to pause."""
        log.info("budget.usage storage_calls=%s batches=%s", self.storage_calls, self._batches)
        until = self._clock() + retry_after
        for name, bucket in self.buckets.items():
            # Emptied in place: an invocation waiting inside acquire() for a slot of this pool sees it empty
            # when it wakes and asks storage again. (Replacing the pool let that invocation count the new one
            # down to -1, which acquire() then read as slots in hand: writes went unmetered until the next 429.)
            self._pools[name].tokens = 0
            await bucket.block(until)

    async def aclose(self) -> None:
        """Log what the shared budget cost in storage calls (the process is shutting down)."""
        log.info("budget.usage storage_calls=%s batches=%s", self.storage_calls, self._batches)

    @property
    def storage_calls(self) -> int:
        """Storage calls the buckets made so far (for the benchmark)."""
        return sum(b.storage_calls for b in self.buckets.values())


class TableBudgetStore:
    """``BudgetStore`` on Azure Table storage."""

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self._ensure = EnsureOnce()

    async def read(self, name: str) -> BucketState | None:
        await self._ensure(self._client.create_table, "table")
        try:
            entity: Any = await self._client.get_entity(PARTITION, name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not read budget {name}: {type(exc).__name__}") from exc
        return BucketState(float(entity["tat"]), float(entity.get("blockedUntil", 0.0)), entity.metadata.get("etag"))

    async def write(self, name: str, state: BucketState) -> str | None:
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": name,
            "tat": float(state.tat),
            "blockedUntil": float(state.blocked_until),
        }
        try:
            if state.etag is None:
                meta = await self._client.create_entity(entity)
            else:
                meta = await self._client.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=state.etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
        except AzureError as exc:
            raise StorageError(f"could not write budget {name}: {type(exc).__name__}") from exc
        return str(meta.get("etag"))
