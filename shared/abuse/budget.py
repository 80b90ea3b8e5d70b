"""The per-domain budget, enforced where sign-ups cost Graph writes: the lifecycle's admission step."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..lifecycle.models import utcnow
from .counters import CountStore, SharedLimiter


class DomainBudget:
    """How many sign-ups per email domain the admission step lets through per window without a person.

    ``await budget.admit(domain, now)`` returns True and counts the sign-up when the domain's window
    (``RATE_LIMIT_WINDOW_SECONDS``, aligned to the epoch) has room under ``RATE_LIMIT_PER_DOMAIN``; False (and
    counts nothing) when it is full. The caller, the lifecycle's admission step, sends a sign-up it was
    refused for to review (``pending_approval``) instead of inviting it: the budget never refuses anyone
    at the door, and a sign-up sent to review costs no Graph write. A limit of 0 admits everything.

    It never fails and hardly waits: counting is in memory per instance and reconciled with the other
    instances through Table storage in the background (``shared.abuse.counters``); only the first call of a
    window on an instance waits for one read of the others' counts (at most 2 s). Contention cannot turn
    into a refusal, and the error bound of ``docs/abuse.md`` applies. ``signup_id``, when given,
    is counted once per window on this instance, so a redelivered queue message is not charged twice (on
    another instance it would be, which errs towards review).
    """

    def __init__(self, limiter: SharedLimiter, limit: int) -> None:
        self._limiter = limiter
        self.limit = limit

    @classmethod
    def create(
        cls,
        store: CountStore,
        limit: int,
        window: float,
        sync_every: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> DomainBudget:
        """A budget counting in ``store`` (``TableCountStore`` in the app, ``MemoryCountStore`` in tests), on
        ``clock``, the lifecycle's clock, so that a test's clock moves its windows too."""
        limiter = SharedLimiter(store, "domain", window, sync_every, clock=lambda: clock().timestamp())
        return cls(limiter, limit)

    async def admit(self, domain: str, now: datetime, signup_id: str | None = None) -> bool:
        """True: within the domain's budget (counted). False: over it; send the sign-up to review."""
        if self.limit <= 0:
            return True
        verdict = await self._limiter.take(domain.casefold(), self.limit, now.timestamp(), once=signup_id)
        return verdict.allowed

    async def aclose(self) -> None:
        """Stop the background reconciliation (publishing this instance's counts once more)."""
        await self._limiter.aclose()
