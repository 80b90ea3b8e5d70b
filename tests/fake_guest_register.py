"""``GuestRegister`` in memory, with ETag semantics, for tests of the guest lifecycle."""

from __future__ import annotations

import itertools

from shared.errors import ConcurrencyConflict
from shared.guests import GuestDue, GuestRecord, GuestState


class FakeGuestRegister:
    """The register and its due index in dictionaries; ``reads`` counts storage reads."""

    def __init__(self) -> None:
        self.records: dict[str, GuestRecord] = {}
        self.days: dict[str, set[str]] = {}
        self.reads = 0
        self._etags = itertools.count(1)
        self.sweep_cursor: tuple[str, str] | None = None  # (day, etag)
        self.states: dict[GuestState, set[str]] = {}

    def _stamp(self, record: GuestRecord) -> GuestRecord:
        stamped = record.evolve(etag=f'W/"{next(self._etags)}"')
        self.records[record.user_id] = stamped
        return stamped

    async def insert(self, record: GuestRecord) -> GuestRecord | None:
        return None if record.user_id in self.records else self._stamp(record)

    async def get(self, user_id: str) -> GuestRecord | None:
        self.reads += 1
        return self.records.get(user_id)

    async def replace(self, record: GuestRecord) -> GuestRecord:
        current = self.records.get(record.user_id)
        if current is None or current.etag != record.etag:
            raise ConcurrencyConflict("etag mismatch")
        return self._stamp(record)

    async def page(self, size: int, token: str | None) -> tuple[list[GuestRecord], str | None]:
        self.reads += 1
        ordered = sorted(self.records)
        start = int(token or 0)
        chunk = [self.records[k] for k in ordered[start : start + size]]
        return chunk, (str(start + size) if start + size < len(ordered) else None)

    async def schedule(self, entry: GuestDue) -> None:
        self.days.setdefault(entry.day, set()).add(entry.user_id)

    async def due(self, day: str, limit: int) -> list[GuestDue]:
        self.reads += 1
        return [GuestDue(day, u) for u in sorted(self.days.get(day, ()))[:limit]]

    async def due_page(self, day: str, size: int, token: str | None) -> tuple[list[GuestDue], str | None]:
        self.reads += 1
        ordered = sorted(self.days.get(day, ()))
        start = int(token or 0)
        more = start + size < len(ordered)
        return [GuestDue(day, u) for u in ordered[start : start + size]], (str(start + size) if more else None)

    async def index_state(self, user_id: str, state: GuestState) -> None:
        self.states.setdefault(state, set()).add(user_id)

    async def unindex_state(self, user_id: str, state: GuestState) -> None:
        self.states.get(state, set()).discard(user_id)

    async def in_state(self, state: GuestState, size: int, token: str | None) -> tuple[list[str], str | None]:
        self.reads += 1
        ordered = sorted(self.states.get(state, ()))
        start = int(token or 0)
        more = start + size < len(ordered)
        return ordered[start : start + size], (str(start + size) if more else None)

    async def unschedule(self, entries: list[GuestDue]) -> None:
        for entry in entries:
            self.days.get(entry.day, set()).discard(entry.user_id)

    async def cursor(self) -> tuple[str | None, str | None]:
        self.reads += 1
        return self.sweep_cursor if self.sweep_cursor is not None else (None, None)

    async def advance(self, day: str, etag: str | None) -> str | None:
        current = self.sweep_cursor[1] if self.sweep_cursor is not None else None
        if etag != current:
            return None
        self.sweep_cursor = (day, f'W/"{next(self._etags)}"')
        return self.sweep_cursor[1]
