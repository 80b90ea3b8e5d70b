"""The invitation worker: an explicit state machine over the sign-up's Table entity.

One queue delivery runs ``process``::

    read entity ──► missing ───────────────────────────► drop (nothing to do)
        │
        ├──► invited / failed ─────────────────────────► drop (already finished)
        ├──► inviting, lease live ─────────────────────► raise SignupBusy (retry later)
        └──► queued, or inviting with lease expired
               │  claim: status=inviting, attempts+1, lease   (ETag-conditional;
               │         a lost race re-reads and decides again)
               ▼
           POST /invitations (at most once per claim)
               ├── success ───────────► invited  (ids, status, redeem URL)
               ├── permanent error ───► failed   (Graph's error code)
               └── transient error ───► last delivery? failed, then raise
                                        otherwise release the lease and raise

Only the delivery holding a live lease calls Graph, so a redelivered or
concurrently delivered message never invites twice within one attempt. An
attempt whose worker died mid-call is retried after its lease expires; Graph
answers a repeated invitation of the same address with the same user and a new
redeem URL, which is also the only way to recover the lost redeem URL.

``finalise_poisoned`` is the last word for messages that reached the poison
queue without a terminal state (a worker that died on the last delivery).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from ..errors import (
    AmbiguousGraphError,
    ConcurrencyConflict,
    PermanentGraphError,
    SignupBusy,
    TransientGraphError,
)
from ..graph.directory import Directory, Invitation, InvitationOptions
from .models import Signup, Status, utcnow
from .store import SignupStore

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES: Final = 5
PUBLIC_MESSAGES: Final = {
    "permanent": "The directory refused the invitation.",
    "transient": "The directory could not be reached in time; the sign-up was not completed.",
    "internal": "The sign-up could not be processed.",
    "poisoned": "The sign-up could not be processed after repeated attempts.",
}


class Outcome(StrEnum):
    """What one delivery did."""

    INVITED = "invited"
    FAILED = "failed"
    ALREADY_DONE = "already_done"
    MISSING = "missing"


@dataclass(frozen=True)
class Delivery:
    """One delivery of a queue message."""

    signup_id: str
    dequeue_count: int
    max_dequeue_count: int

    @property
    def last(self) -> bool:
        """True when the host moves the message to the poison queue if this delivery fails."""
        return self.dequeue_count >= self.max_dequeue_count


class InvitationWorker:
    """Drives one sign-up from ``queued`` to ``invited`` or ``failed``."""

    def __init__(
        self,
        store: SignupStore,
        directory: Directory,
        options: InvitationOptions,
        *,
        lease_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._directory = directory
        self._options = options
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock

    async def process(self, delivery: Delivery) -> Outcome:
        """Handle one delivery; raise ``TransientGraphError`` when the host should redeliver."""
        claimed = await self._claim(delivery.signup_id)
        if isinstance(claimed, Outcome):
            return claimed
        sid = claimed.id
        invitation = Invitation(email=claimed.email, display_name=claimed.display_name, options=self._options)
        try:
            result = await self._directory.invite(invitation)
        except PermanentGraphError as exc:
            log.warning(
                "worker.refused signup_id=%s attempt=%s code=%s status=%s request_id=%s",
                sid,
                claimed.attempts,
                exc.code,
                exc.status,
                exc.request_id,
            )
            await self._settle(claimed, self._failure(exc.code, "permanent", exc))
            return Outcome.FAILED
        except Exception as exc:
            # An ambiguous invitation is redelivered like a transient one: Graph answers a repeated
            # invitation with the same user, so repeating it is safe (if not silent).
            transient = isinstance(exc, (TransientGraphError, AmbiguousGraphError))
            code = exc.code if isinstance(exc, (TransientGraphError, AmbiguousGraphError)) else "InternalError"
            log.warning(
                "worker.attempt_failed signup_id=%s attempt=%s code=%s last=%s",
                sid,
                claimed.attempts,
                code,
                delivery.last,
                exc_info=not transient,
            )
            if delivery.last:
                await self._settle(claimed, self._failure(code, "transient" if transient else "internal", exc))
            else:
                await self._release(claimed, code, exc)
            raise
        await self._settle(
            claimed,
            {
                "status": Status.INVITED,
                "invitation_id": result.invitation_id,
                "invited_user_id": result.invited_user_id,
                "invitation_status": result.status,
                "redeem_url": result.redeem_url,
                "graph_request_id": result.request_id,
                "error_code": None,
                "error_message": None,
                "error_detail": None,
            },
        )
        log.info(
            "worker.invited signup_id=%s attempt=%s invitation_status=%s",
            sid,
            claimed.attempts,
            result.status,
        )
        return Outcome.INVITED

    async def finalise_poisoned(self, signup_id: str) -> Outcome:
        """Record ``failed`` for a sign-up whose message was given up on, unless it finished."""
        for _ in range(MAX_CONFLICT_RETRIES):
            signup = await self._store.get(signup_id)
            if signup is None:
                return Outcome.MISSING
            if signup.status.terminal:
                return Outcome.ALREADY_DONE
            self._raise_if_leased(signup)
            failed = signup.evolve(**self._failure("DeliveryExhausted", "poisoned", None), lease_until=None)
            try:
                await self._store.replace(failed)
            except ConcurrencyConflict:
                continue
            log.warning("worker.poisoned signup_id=%s attempts=%s", signup_id, signup.attempts)
            return Outcome.FAILED
        raise SignupBusy(signup_id, 1.0)

    def _raise_if_leased(self, signup: Signup) -> None:
        now = self._clock()
        if signup.status is Status.INVITING and signup.lease_until and signup.lease_until > now:
            raise SignupBusy(signup.id, (signup.lease_until - now).total_seconds())

    async def _claim(self, signup_id: str) -> Signup | Outcome:
        for _ in range(MAX_CONFLICT_RETRIES):
            signup = await self._store.get(signup_id)
            if signup is None:
                log.warning("worker.missing signup_id=%s", signup_id)
                return Outcome.MISSING
            if signup.status.terminal:
                log.info("worker.already_done signup_id=%s status=%s", signup_id, signup.status.value)
                return Outcome.ALREADY_DONE
            self._raise_if_leased(signup)
            now = self._clock()
            claim = signup.evolve(
                status=Status.INVITING,
                attempts=signup.attempts + 1,
                lease_until=now + self._lease,
                updated_at=now,
            )
            try:
                return await self._store.replace(claim)
            except ConcurrencyConflict:
                log.info("worker.claim_conflict signup_id=%s", signup_id)
        raise SignupBusy(signup_id, 1.0)

    def _failure(self, code: str, kind: str, exc: BaseException | None) -> dict[str, Any]:
        detail = None
        if exc is not None:
            status = getattr(exc, "status", None)
            detail = f"{type(exc).__name__}: {exc}" + (f" (HTTP {status})" if status else "")
        return {
            "status": Status.FAILED,
            "error_code": code,
            "error_message": PUBLIC_MESSAGES[kind],
            "error_detail": detail[:1000] if detail else None,
            "graph_request_id": getattr(exc, "request_id", None),
        }

    async def _settle(self, claimed: Signup, changes: dict[str, Any]) -> None:
        """Write a terminal state; on a conflict re-read and apply it unless someone else finished."""
        current = claimed
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                await self._store.replace(current.evolve(lease_until=None, **changes))
                return
            except ConcurrencyConflict:
                fresh = await self._store.get(claimed.id)
                if fresh is None or fresh.status.terminal:
                    log.warning(
                        "worker.settle_superseded signup_id=%s wanted=%s found=%s",
                        claimed.id,
                        changes["status"].value,
                        fresh.status.value if fresh else None,
                    )
                    return
                current = fresh
        raise ConcurrencyConflict(f"could not settle sign-up {claimed.id}")

    async def _release(self, claimed: Signup, code: str, exc: BaseException) -> None:
        """Give the lease back after a transient failure so the redelivery can claim at once."""
        released = claimed.evolve(lease_until=None, error_code=code, error_detail=str(exc)[:1000])
        try:
            await self._store.replace(released)
        except ConcurrencyConflict:
            log.info("worker.release_conflict signup_id=%s", claimed.id)
