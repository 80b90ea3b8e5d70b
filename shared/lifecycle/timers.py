"""The lifecycle's timers, in seconds (from settings; ``shared.services.timers`` builds them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timers:
    """Retry, deadline, window and lease durations, in seconds."""

    retry_initial: float = 10.0
    retry_max: float = 300.0
    deadline: float = 86400.0
    repeat_window: float = 86400.0
    queued_grace: float = 600.0
    lease: float = 150.0
    # Graph's directory is eventually consistent: a guest created by a lost-answer
    # invitation may take seconds to show in $filter reads, so wait at least this long.
    ambiguous_delay: float = 30.0
    # A request that may have invited keeps reading the directory past its deadline, until Graph
    # answers or this long after the deadline; then it ends ``unknown`` (and still holds the address).
    doubt_cap: float = 3 * 86400.0
    pending_expiry: float = 14 * 86400.0

    def backoff(self, attempt: int, jitter: float) -> float:
        """Exponential backoff for the ``attempt``-th retry, capped; ``jitter`` in [0, 1) spreads it."""
        ceiling = min(self.retry_max, self.retry_initial * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + ceiling / 2 * jitter
