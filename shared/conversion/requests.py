"""One conversion asked for through the admin route: recorded and queued like a sign-up."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from ..access import Caller
from ..audit import AuditEntry, AuditLog
from ..errors import StorageError
from ..lifecycle.intake import Timers
from ..lifecycle.models import Signup, Status, new_signup_id, utcnow
from ..lifecycle.queue import SignupQueue
from ..lifecycle.store import DueEntry, DueIndex, SignupStore, bucket_of
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
        new_id: Callable[[], str] = new_signup_id,
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
            id=self._new_id(),
            email=email or "",
            display_name=reference,
            company=None,
            justification=None,
            status=Status.QUEUED,
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
        await self._index.add(DueEntry(bucket_of(due), signup.id))
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
