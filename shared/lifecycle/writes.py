"""The one way a record's status is written: a declared transition, ETag-conditional, with a write token.

``write`` applies ``transitions.apply`` (the event must be declared for the
record's status and its guard must hold), stamps a fresh write token, and
replaces the record if its ETag still matches. A reported conflict is a real
conflict unless the record now carries this write's token: then the write
landed and storage reported 412 only because the SDK retried a request that had
already succeeded. Callers re-read and decide again on ``ConcurrencyConflict``.

After a write that landed, the store's ``RecordIndex`` (the stats' day index) is
told. Its failure does not fail the write, which stands: the sweeper repairs
the index when it next meets the record (``Sweeper._visit``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import ConcurrencyConflict, StorageError
from .models import Signup, Status, new_write_token, utcnow
from .store import SignupStore, index_of
from .transitions import Event, apply

log = logging.getLogger(__name__)


async def write(
    store: SignupStore,
    signup: Signup,
    event: Event,
    target: Status | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    **changes: Any,
) -> Signup:
    """Write ``event``'s transition of ``signup`` (as read) with ``changes``; the record as stored."""
    changes.setdefault("updated_at", clock())
    intended = apply(signup, event, target, write_token=new_write_token(), **changes)
    try:
        written = await store.replace(intended)
    except ConcurrencyConflict:
        fresh = await store.get(signup.id)
        if fresh is None or fresh.write_token != intended.write_token:
            log.info("lifecycle.write_conflict signup_id=%s event=%s", signup.id, event.value)
            raise
        written = fresh
    await reindex(store, written)
    return written


async def reindex(store: SignupStore, signup: Signup, *, force: bool = False) -> None:
    """Tell the store's ``RecordIndex`` of ``signup`` as stored; a failure is logged (the sweeper repairs it)."""
    try:
        await index_of(store).indexed(signup, force=force)
    except (StorageError, ConcurrencyConflict) as exc:
        log.warning("lifecycle.index_failed signup_id=%s error=%s", signup.id, type(exc).__name__)
