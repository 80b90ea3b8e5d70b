"""Intake: record a validated sign-up and queue it, or fail without leaving a half-made request.

The record is written first and the message second, so the worker never sees a
message without its record. If the enqueue fails the record is deleted again
and the caller answers 503: nothing is accepted that is not durable twice over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import StorageError
from .models import Signup, Status, is_signup_id, new_signup_id, utcnow
from .queue import SignupQueue
from .store import SignupStore
from .validation import SignupForm

log = logging.getLogger(__name__)


class Intake:
    """Accepts sign-ups and answers status queries."""

    def __init__(
        self,
        store: SignupStore,
        queue: SignupQueue,
        *,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_signup_id,
    ) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self._new_id = new_id

    async def submit(self, form: SignupForm) -> Signup:
        """Record and enqueue ``form``; raise ``StorageError`` if either step fails."""
        now = self._clock()
        signup = Signup(
            id=self._new_id(),
            email=form.email,
            display_name=form.display_name,
            company=form.company,
            justification=form.justification,
            status=Status.QUEUED,
            created_at=now,
            updated_at=now,
        )
        created = await self._store.create(signup)
        try:
            await self._queue.enqueue(signup.id)
        except StorageError:
            try:
                await self._store.delete(signup.id)
            except StorageError:
                # The id was never given out, so the orphan record is invisible; log it for cleanup.
                log.error("intake.orphan_record signup_id=%s", signup.id)
            raise
        log.info("intake.accepted signup_id=%s domain=%s", signup.id, form.domain)
        return created

    async def public_status(self, signup_id: str) -> dict[str, Any] | None:
        """The anonymous view of a sign-up, or None when the id is unknown."""
        if not is_signup_id(signup_id):
            return None
        signup = await self._store.get(signup_id)
        return signup.public_view() if signup else None
