"""Reviewers' digests: one mail per reviewer per day, at most once, however many guests they review.

When a guest is put up for review, each of its reviewers gets an entry in the digest queue; after a
sweep, ``Digests.send`` reads the whole queue in pages of ``PAGE`` (a reviewer's entries are adjacent, so
one reviewer is complete before the next starts, however many are queued) and mails every reviewer with
entries once, listing them. Entities in the
lifecycle's table::

    PartitionKey          RowKey                         what
    guestdigestq          <reviewer hash>-<user id>      a guest waiting in a reviewer's next digest
    guestdigest-<day>     <reviewer hash>                the day's mark: sending, sent, unknown or failed

At most once: the day's mark is a conditional insert made before the mail is sent; only the sweep that
created it sends. A mark left ``sending`` (a crash, a lost answer) past the lease is never sent again:
it becomes ``unknown`` and its entries are dropped (the Reviews tab lists those guests anyway). Only an
answer proving the mail was not sent (a transient refusal) removes the mark, so a later sweep sends it.
A reviewer who had the day's digest gets the guests added later in the next day's. ``day`` is the
rules' day (``GUEST_LIFECYCLE_DAY_SECONDS``), so a shortened day in a test shortens this too.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from ..errors import AmbiguousGraphError, PermanentGraphError, TransientGraphError
from ..graph.directory import Directory
from ..storage import Table
from .mails import digest_mail
from .records import DAY

log = logging.getLogger(__name__)

QUEUE_PARTITION: Final = "guestdigestq"
MARK_PREFIX: Final = "guestdigest-"
PAGE: Final = 1000  # queue entries read at once; a send reads the whole queue, page by page


def reviewer_key(reviewer: str) -> str:
    """A reviewer's key: matched case-insensitively, the address never in a key."""
    return hashlib.sha256(reviewer.casefold().encode("utf-8")).hexdigest()[:32]


def day_number(moment: datetime, day: timedelta = DAY) -> int:
    """Which rules' day ``moment`` falls in (days since the epoch)."""
    return int(moment.timestamp() // day.total_seconds())


@dataclass(frozen=True)
class DigestReport:
    """What one ``send`` did."""

    sent: int = 0
    unknown: int = 0  # marks found in doubt (never resent) or answers lost
    waiting: int = 0  # reviewers who had today's digest already: their entries wait for tomorrow
    failed: int = 0


class Digests:
    """The digest queue and the day's marks, and the mail that goes out once per reviewer per day."""

    def __init__(
        self,
        table: Table,
        directory: Directory,
        *,
        sender: str | None,
        reviews_url: str,
        lease: float,
        day: timedelta = DAY,
    ) -> None:
        self._table = table
        self._directory = directory
        self._sender = sender
        self._reviews_url = reviews_url
        self._lease = timedelta(seconds=lease)
        self._day = day

    async def enqueue(self, reviewer: str, user_id: str, profile: str | None) -> None:
        """Put a guest in the reviewer's next digest (idempotent)."""
        entity = {
            "PartitionKey": QUEUE_PARTITION,
            "RowKey": f"{reviewer_key(reviewer)}-{user_id}",
            "reviewer": reviewer,
            "userId": user_id,
            "profile": profile or "",
        }
        await self._table.upsert(entity)

    async def _by_reviewer(self) -> AsyncIterator[list[Any]]:
        """The whole queue, one reviewer's entries at a time, read in pages of ``PAGE``.

        A row key starts with the reviewer's key, so a reviewer's entries are adjacent: a group is complete
        once the next key shows. Pages go by row key (keyset), so the entries dropped meanwhile move nothing.
        """
        after: str | None = None
        group: list[Any] = []
        while True:
            page = await self._table.partition(QUEUE_PARTITION, PAGE, after=after)
            for entity in page:
                if group and reviewer_key(str(entity["reviewer"])) != reviewer_key(str(group[0]["reviewer"])):
                    yield group
                    group = []
                group.append(entity)
            if len(page) < PAGE:
                break
            after = str(page[-1]["RowKey"])
        if group:
            yield group

    async def _drop(self, entities: list[Any]) -> None:
        await self._table.delete_many(QUEUE_PARTITION, [str(entity["RowKey"]) for entity in entities])

    async def send(self, now: datetime) -> DigestReport:
        """Mail each reviewer with queued guests, at most once today; see the module's rules."""
        partition = f"{MARK_PREFIX}{day_number(now, self._day)}"
        sent = unknown = waiting = failed = 0
        async for entities in self._by_reviewer():
            reviewer = str(entities[0]["reviewer"])
            key = reviewer_key(reviewer)
            mark = {"PartitionKey": partition, "RowKey": key, "state": "sending", "at": now}
            etag = await self._table.insert(mark)
            if etag is None:
                existing = await self._table.read(partition, key)
                stale = existing is not None and existing.get("state") == "sending"
                if existing is not None and stale and now - existing["at"] >= self._lease:
                    # Its sender died or lost the answer: it may have gone, so it is never sent again.
                    if await self._table.replace({**mark, "state": "unknown"}, existing.metadata["etag"]):
                        await self._drop(entities)
                        unknown += 1
                else:
                    waiting += 1
                continue
            if not self._sender:
                await self._table.replace({**mark, "state": "failed"}, etag)
                await self._drop(entities)
                failed += 1
                log.warning("guests.digest_no_sender reviewers=1")
                continue
            profiles = {str(e["userId"]): (str(e.get("profile") or "") or None) for e in entities}
            message = digest_mail(reviewer, profiles, self._reviews_url)
            try:
                await self._directory.send_mail(self._sender, message)
            except TransientGraphError:
                await self._table.delete(partition, key)  # proven not sent: a later sweep sends it
                continue
            except AmbiguousGraphError:
                await self._table.replace({**mark, "state": "unknown"}, etag)
                await self._drop(entities)
                unknown += 1
                continue
            except PermanentGraphError as exc:
                log.warning("guests.digest_refused code=%s", exc.code)
                await self._table.replace({**mark, "state": "failed"}, etag)
                await self._drop(entities)
                failed += 1
                continue
            await self._table.replace({**mark, "state": "sent", "guests": len(entities)}, etag)
            await self._drop(entities)
            sent += 1
            log.info("guests.digest_sent guests=%s", len(entities))
        return DigestReport(sent, unknown, waiting, failed)
