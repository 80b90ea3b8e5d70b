"""The guest lifecycle's part of ``FakeDirectory``: blocked accounts, memberships, deleted items, sign-in activity.

A mixin so ``tests/fakes.py`` needs one line; its state is created on first use. It follows the emulator
(``graph_emulator.lifecycle``): deleting a user moves it, with its groups, to deleted items for 30 days
(``self.clock`` says when "now" is); ``premium_licence = False`` makes ``guest_pages`` raise
``FeatureUnavailable`` when sign-in activity is asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.errors import FeatureUnavailable, PermanentGraphError
from shared.graph.directory import (
    DELETED_ITEM_RETENTION,
    DeletedUser,
    DirectoryUser,
    GuestAccount,
    Membership,
    SignInActivity,
)


@dataclass
class GuestState:
    """What the fake knows beyond ``FakeDirectory``'s users and members."""

    disabled: set[str] = field(default_factory=set)
    deleted: dict[str, tuple[DirectoryUser, datetime, list[str]]] = field(default_factory=dict)
    sign_ins: dict[str, SignInActivity] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (operation, object id, priority)
    premium_licence: bool = True
    # Scripted faults per operation ("disable", "enable", "remove-member", "delete"): (acted, error) pops one
    # per call; acted True does the write and then loses the answer as ``error``.
    faults: dict[str, list[tuple[bool, BaseException]]] = field(default_factory=dict)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


class FakeGuestCalls:
    """``Directory``'s lifecycle methods over ``FakeDirectory``'s ``users`` and ``members``."""

    users: dict[str, DirectoryUser]
    members: set[tuple[str, str]]

    @property
    def guests(self) -> GuestState:
        state: GuestState | None = self.__dict__.get("_guest_state")
        if state is None:
            state = self.__dict__["_guest_state"] = GuestState()
        return state

    def _by_id(self, user_id: str) -> DirectoryUser | None:
        return next((u for u in self.users.values() if u.id == user_id), None)

    def _fault(self, operation: str) -> tuple[bool, BaseException] | None:
        queued = self.guests.faults.get(operation)
        return queued.pop(0) if queued else None

    async def set_sign_in_enabled(self, user_id: str, enabled: bool, *, priority: str = "low") -> None:
        operation = "enable" if enabled else "disable"
        self.guests.calls.append((operation, user_id, priority))
        fault = self._fault(operation)
        if fault is not None and not fault[0]:
            raise fault[1]
        if self._by_id(user_id) is None:
            raise PermanentGraphError("no such user", code="Request_ResourceNotFound", status=404)
        (self.guests.disabled.discard if enabled else self.guests.disabled.add)(user_id)
        if fault is not None:
            raise fault[1]

    async def remove_group_member(self, group_id: str, user_id: str, *, priority: str = "low") -> bool:
        self.guests.calls.append(("remove-member", f"{group_id}/{user_id}", priority))
        fault = self._fault("remove-member")
        if fault is not None and not fault[0]:
            raise fault[1]
        if (group_id, user_id) not in self.members:
            return False
        self.members.discard((group_id, user_id))
        if fault is not None:
            raise fault[1]
        return True

    async def delete_user(self, user_id: str, *, priority: str = "low") -> bool:
        self.guests.calls.append(("delete", user_id, priority))
        fault = self._fault("delete")
        if fault is not None and not fault[0]:
            raise fault[1]
        user = self._by_id(user_id)
        if user is None:
            return False
        groups = sorted(g for g, u in self.members if u == user_id)
        self.members -= {(g, user_id) for g in groups}
        del self.users[(user.mail or "").lower()]
        self.guests.deleted[user_id] = (user, self.guests.clock(), groups)
        if fault is not None:
            raise fault[1]
        return True

    def _deleted(self, user_id: str) -> tuple[DirectoryUser, datetime, list[str]] | None:
        item = self.guests.deleted.get(user_id)
        if item is not None and self.guests.clock() - item[1] > DELETED_ITEM_RETENTION:
            del self.guests.deleted[user_id]
            return None
        return item

    async def restore_deleted_user(self, user_id: str, *, priority: str = "low") -> DirectoryUser:
        self.guests.calls.append(("restore", user_id, priority))
        item = self._deleted(user_id)
        if item is None:
            raise PermanentGraphError("not in deleted items", code="Request_ResourceNotFound", status=404)
        user, _, groups = self.guests.deleted.pop(user_id)
        self.users[(user.mail or "").lower()] = user
        self.members |= {(g, user_id) for g in groups}
        return user

    async def get_deleted_user(self, user_id: str) -> DeletedUser | None:
        item = self._deleted(user_id)
        return None if item is None else DeletedUser(user_id, item[1], item[0].user_type)

    async def get_guest(self, user_id: str, *, sign_in_activity: bool = False) -> GuestAccount | None:
        if sign_in_activity and not self.guests.premium_licence:
            raise FeatureUnavailable(
                "signInActivity", "no premium licence", code="Authentication_RequestFromNonPremiumTenantOrB2CTenant"
            )
        user = self._by_id(user_id)
        if user is None:
            return None
        sign_in = self.guests.sign_ins.get(user.id, SignInActivity()) if sign_in_activity else None
        return _account(user, user.id not in self.guests.disabled, sign_in)

    async def guest_pages(self, *, sign_in_activity: bool = True) -> AsyncIterator[list[GuestAccount]]:
        if sign_in_activity and not self.guests.premium_licence:
            raise FeatureUnavailable(
                "signInActivity", "no premium licence", code="Authentication_RequestFromNonPremiumTenantOrB2CTenant"
            )
        page: list[GuestAccount] = []
        for user in list(self.users.values()):
            if user.user_type != "Guest":
                continue
            sign_in = self.guests.sign_ins.get(user.id, SignInActivity()) if sign_in_activity else None
            page.append(_account(user, user.id not in self.guests.disabled, sign_in))
            if len(page) == 100:
                yield page
                page = []
        if page:
            yield page

    async def member_of(self, user_id: str) -> list[Membership]:
        return [Membership(g, "#microsoft.graph.group") for g, u in sorted(self.members) if u == user_id]


def _account(user: DirectoryUser, enabled: bool, sign_in: SignInActivity | None) -> GuestAccount:
    return GuestAccount(
        id=user.id,
        mail=user.mail,
        created=None,
        creation_type=user.creation_type or "Invitation",
        external_user_state=user.external_user_state,
        external_user_state_changed=None,
        account_enabled=enabled,
        sign_in=sign_in,
    )
