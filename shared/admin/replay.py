"""Replay: send failed sign-ups through the lifecycle again, after the cause was fixed.

A replayed sign-up goes through the same admission as a new one: if its address
now belongs to another pending or recently invited sign-up it is linked to that
one instead of inviting twice. Its history of attempts and what the directory
held before stay, so the one-mail guarantee holds across a replay. Replaying is
idempotent: only sign-ups that are ``failed`` when read are touched.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..errors import ConcurrencyConflict
from ..lifecycle.admission import Admission
from ..lifecycle.models import Signup, Status, is_signup_id
from ..lifecycle.store import SignupStore
from ..lifecycle.transitions import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """Which failed sign-ups to replay: by id, or by error code and creation time."""

    ids: tuple[str, ...] = ()
    error_code: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, signup: Signup) -> bool:
        """True when a failed sign-up falls within the code and time bounds."""
        if self.error_code is not None and signup.error_code != self.error_code:
            return False
        if self.since is not None and signup.created_at < self.since:
            return False
        return self.until is None or signup.created_at < self.until


@dataclass(frozen=True)
class ReplayResult:
    """What happened to one sign-up."""

    signup_id: str
    action: str  # requeued | linked | skipped | missing | dry-run
    detail: str
    domain: str | None = None


class Replayer:
    """Re-admits failed sign-ups."""

    def __init__(self, store: SignupStore, admission: Admission) -> None:
        self._store = store
        self._admission = admission

    async def candidates(self, selection: Selection) -> AsyncIterator[Signup | str]:
        """The failed sign-ups selected (an id that names no sign-up comes back as the id)."""
        if selection.ids:
            for signup_id in selection.ids:
                signup = await self._store.get(signup_id) if is_signup_id(signup_id) else None
                yield signup if signup is not None else signup_id
            return
        async for signup in self._store.failed(selection.since, selection.until):
            if selection.matches(signup):
                yield signup

    async def replay(self, selection: Selection, *, dry_run: bool = False) -> AsyncIterator[ReplayResult]:
        """Replay each selected sign-up, yielding what was done as it goes."""
        async for found in self.candidates(selection):
            if isinstance(found, str):
                yield ReplayResult(found, "missing", "no such sign-up")
                continue
            yield await self._one(found, selection, dry_run)

    async def _one(self, signup: Signup, selection: Selection, dry_run: bool) -> ReplayResult:
        if signup.status is not Status.FAILED or not selection.matches(signup):
            return ReplayResult(signup.id, "skipped", f"status {signup.status.value}", signup.domain)
        if dry_run:
            return ReplayResult(signup.id, "dry-run", f"would replay ({signup.error_code})", signup.domain)
        try:
            # A fresh look at the directory: whatever made it fail may have changed.
            admitted = await self._admission.revive(
                signup, Event.REPLAY, maybe_invited=False, directory_before=None, existing_user_id=None
            )
        except ConcurrencyConflict:
            return ReplayResult(signup.id, "skipped", "changed while replaying; run again", signup.domain)
        log.info("admin.replayed signup_id=%s code=%s status=%s", signup.id, signup.error_code, admitted.status.value)
        if admitted.status is Status.LINKED:
            return ReplayResult(signup.id, "linked", f"follows {admitted.linked_to}", signup.domain)
        return ReplayResult(signup.id, "requeued", f"was {signup.error_code}", signup.domain)


def summarise(results: Sequence[ReplayResult]) -> dict[str, int]:
    """How many sign-ups each action touched."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.action] = counts.get(result.action, 0) + 1
    return counts
