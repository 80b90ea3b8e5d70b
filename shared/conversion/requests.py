"""One conversion asked for through the admin route: recorded and queued like a sign-up.

The record is written ``received`` and its id queued; the worker admits it like
any sign-up (``shared.lifecycle.admission``: the address claim, so a conversion
and a sign-up for one address never both invite), then converts it. A lost
message is found by the sweeper from the minute in the record's id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from ..access import Caller
from ..audit import AuditEntry, AuditLog
from ..errors import StorageError
from ..lifecycle.models import Signup, Status, new_signup_id, utcnow
from ..lifecycle.queue import SignupQueue
from ..lifecycle.store import DueIndex, SignupStore
from ..lifecycle.timers import Timers
from .converter import ConversionOptions

log = logging.getLogger(__name__)


class ConversionRequests:
    """Records a conversion (status ``queued``, the request on the record) and queues it for the worker."""

    def __init__(
        self,
        store: SignupStore,
        index: DueIndex,
        queue: SignupQueue,
        audit: AuditLog,
        timers: Timers,
        *,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[datetime], str] = new_signup_id,
    ) -> None:
        self._store = store
        self._index = index
        self._queue = queue
        self._audit = audit
        self._timers = timers
        self._clock = clock
        self._new_id = new_id

    async def submit(self, reference: str, email: str | None, options: ConversionOptions, caller: Caller) -> Signup:
        """Record and queue; ``StorageError`` when nothing could be recorded."""
        now = self._clock()
        due = now + timedelta(seconds=self._timers.queued_grace)
        signup = Signup(
            id=self._new_id(now),
            email=email or "",
            display_name=reference,
            company=None,
            justification=None,
            status=Status.RECEIVED,
            created_at=now,
            updated_at=now,
            deadline=now + timedelta(seconds=self._timers.deadline),
            due_at=due,
            policy_action="convert",
            policy_reason="admin",
            # The organisation's own mail after the conversion goes through this profile's mailTemplate.
            policy_profile=options.mail_profile,
            decided_by=caller.actor,
            decided_at=now,
            conversion={"user": reference, "email": email, **options.to_json()},
        )
        created = await self._store.create(signup)
        await self._audit.append(
            AuditEntry(created.id, now, "received", caller.actor, {"conversion": reference, **options.to_json()})
        )
        try:
            await self._queue.enqueue(created.id)
        except StorageError:
            log.warning("conversion.not_queued signup_id=%s (the sweeper queues it)", created.id)
        log.info("conversion.accepted signup_id=%s actor_kind=%s", created.id, caller.kind)
        return created
