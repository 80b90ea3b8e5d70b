"""Hand-written fakes of the storage and directory protocols (no mocks)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable

from shared.errors import ConcurrencyConflict, StorageError
from shared.graph.directory import DirectoryUser, Invitation, InvitationResult
from shared.lifecycle.models import Signup


class FakeStore:
    """``SignupStore`` in memory, with real ETag semantics and injectable failures."""

    def __init__(self) -> None:
        self.records: dict[str, Signup] = {}
        self._etags = itertools.count(1)
        self.fail_create = False
        self.fail_delete = False
        self.writes: list[Signup] = []
        # Called before each replace; lets a test change the record underneath.
        self.before_replace: Callable[[Signup], None] | None = None

    def _stamp(self, signup: Signup) -> Signup:
        stamped = dataclasses.replace(signup, etag=f'W/"{next(self._etags)}"')
        self.records[signup.id] = stamped
        self.writes.append(stamped)
        return stamped

    async def create(self, signup: Signup) -> Signup:
        if self.fail_create:
            raise StorageError("create failed")
        if signup.id in self.records:
            raise ConcurrencyConflict("exists")
        return self._stamp(signup)

    async def get(self, signup_id: str) -> Signup | None:
        await asyncio.sleep(0)
        return self.records.get(signup_id)

    async def replace(self, signup: Signup) -> Signup:
        if self.before_replace is not None:
            hook, self.before_replace = self.before_replace, None
            hook(signup)
        await asyncio.sleep(0)
        current = self.records.get(signup.id)
        if current is None or current.etag != signup.etag:
            raise ConcurrencyConflict("etag mismatch")
        return self._stamp(signup)

    async def delete(self, signup_id: str) -> None:
        if self.fail_delete:
            raise StorageError("delete failed")
        self.records.pop(signup_id, None)


class FakeQueue:
    """``SignupQueue`` in memory."""

    def __init__(self, fail: bool = False) -> None:
        self.messages: list[str] = []
        self.fail = fail

    async def enqueue(self, signup_id: str) -> None:
        if self.fail:
            raise StorageError("enqueue failed")
        self.messages.append(signup_id)


class FakeDirectory:
    """``Directory`` that records invitations and answers from a script of outcomes."""

    def __init__(self, outcomes: list[BaseException | None] | None = None, delay: float = 0.0) -> None:
        self.invitations: list[Invitation] = []
        self.outcomes = list(outcomes or [])
        self.delay = delay

    async def invite(self, invitation: Invitation) -> InvitationResult:
        self.invitations.append(invitation)
        if self.delay:
            await asyncio.sleep(self.delay)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        n = len(self.invitations)
        return InvitationResult(
            invitation_id=f"inv-{n}",
            invited_user_id=f"user-{n}",
            status="PendingAcceptance",
            redeem_url=f"https://login.example/redeem/{n}",
            request_id=f"req-{n}",
        )

    async def find_users_by_email(self, email: str) -> list[DirectoryUser]:
        return []

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        return None

    async def add_group_member(self, group_id: str, user_id: str) -> None:
        return None
