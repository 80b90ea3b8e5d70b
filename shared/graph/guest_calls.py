"""The guest lifecycle's Graph calls, as a mixin of ``MsGraphDirectory`` (kept apart to keep ``client`` small).

Writes (block or unblock sign-in, remove a membership, delete, restore) go through the directory's
``_write``: paced, in the shared budget, at priority "low" unless told otherwise, and classified as
writes (a lost answer is ambiguous). Reads are classified as reads (any failure is transient). What
Microsoft documents for each call is in FACTS.md, "Guest lifecycle".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation
from msgraph.generated.models.user import User
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from ..errors import FeatureUnavailable, PermanentGraphError
from .directory import DeletedUser, DirectoryUser, GuestAccount, Membership, SignInActivity

if TYPE_CHECKING:
    from msgraph import GraphServiceClient

T = TypeVar("T")
# ``client`` imports this module, so its ``classify`` and ``_user_from_json`` are imported inside the methods.
NON_PREMIUM: Final = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
GUEST_FIELDS: Final = [
    "id",
    "mail",
    "createdDateTime",
    "creationType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "accountEnabled",
]
# With signInActivity selected Graph caps the page (120 in older docs); nextLink is followed anyway.
GUEST_PAGE_SIZE: Final = 100
# Graph's "never" for a sign-in date: docs examples show 0001-01-01T00:00:00Z.
NEVER_BEFORE: Final = 2000


def graph_time(value: Any) -> datetime | None:
    """A Graph timestamp as an aware datetime; None for absent, unreadable or "never" (year 1)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.year >= NEVER_BEFORE else None


def sign_in_from_json(data: Any) -> SignInActivity:
    """``signInActivity`` as Graph sends it (absent or null: never signed in)."""
    data = data if isinstance(data, dict) else {}
    return SignInActivity(
        last_sign_in=graph_time(data.get("lastSignInDateTime")),
        last_non_interactive_sign_in=graph_time(data.get("lastNonInteractiveSignInDateTime")),
        last_successful_sign_in=graph_time(data.get("lastSuccessfulSignInDateTime")),
    )


def guest_from_json(data: dict[str, Any], *, with_sign_in: bool) -> GuestAccount:
    enabled = data.get("accountEnabled")
    return GuestAccount(
        id=str(data["id"]),
        mail=data.get("mail"),
        created=graph_time(data.get("createdDateTime")),
        creation_type=data.get("creationType"),
        external_user_state=data.get("externalUserState"),
        external_user_state_changed=graph_time(data.get("externalUserStateChangeDateTime")),
        account_enabled=enabled if isinstance(enabled, bool) else None,
        sign_in=sign_in_from_json(data.get("signInActivity")) if with_sign_in else None,
    )


class GuestLifecycleCalls:
    """Disable and enable sign-in, remove memberships, delete and restore users, read guests and activity."""

    if TYPE_CHECKING:
        _client: GraphServiceClient

        async def _write(
            self,
            call: Callable[[RequestConfiguration[Any]], Awaitable[T]],
            *,
            limits: Sequence[str] = ...,
            priority: str = ...,
            fence: Callable[[], Awaitable[None]] | None = ...,
        ) -> tuple[T, str | None]: ...

        async def _json(self, request: RequestInformation) -> dict[str, Any]: ...

    async def set_sign_in_enabled(self, user_id: str, enabled: bool, *, priority: str = "low") -> None:
        body = User(account_enabled=enabled)
        await self._write(
            lambda config: self._client.users.by_user_id(user_id).patch(body, request_configuration=config),
            priority=priority,
        )

    async def remove_group_member(self, group_id: str, user_id: str, *, priority: str = "low") -> bool:
        # Always through .ref: DELETE .../members/{id} without /$ref deletes the user itself when the app
        # may delete users (group-delete-members.md).
        ref = self._client.groups.by_group_id(group_id).members.by_directory_object_id(user_id).ref
        try:
            await self._write(lambda config: ref.delete(request_configuration=config), priority=priority)
        except PermanentGraphError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def delete_user(self, user_id: str, *, priority: str = "low") -> bool:
        builder = self._client.users.by_user_id(user_id)
        try:
            await self._write(lambda config: builder.delete(request_configuration=config), priority=priority)
        except PermanentGraphError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def restore_deleted_user(self, user_id: str, *, priority: str = "low") -> DirectoryUser:
        from .client import _user_from_json

        restore = self._client.directory.deleted_items.by_directory_object_id(user_id).restore
        data, _ = await self._write(
            lambda config: self._json(restore.to_post_request_information(config)), priority=priority
        )
        if not data.get("id"):
            raise PermanentGraphError("Graph returned no restored user", code="EmptyResponse")
        return _user_from_json(data)

    async def get_deleted_user(self, user_id: str) -> DeletedUser | None:
        from .client import classify

        item = self._client.directory.deleted_items.by_directory_object_id(user_id)
        try:
            data = await self._json(item.to_get_request_information())
        except Exception as exc:
            error = classify(exc, write=False)
            if error.status == 404:
                return None
            raise error from exc
        if not data.get("id"):
            return None
        return DeletedUser(
            id=str(data["id"]), deleted=graph_time(data.get("deletedDateTime")), user_type=data.get("userType")
        )

    async def get_guest(self, user_id: str, *, sign_in_activity: bool = False) -> GuestAccount | None:
        from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

        from .client import classify

        select = [*GUEST_FIELDS, "signInActivity"] if sign_in_activity else GUEST_FIELDS
        params = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=select)
        builder = self._client.users.by_user_id(user_id)
        request = builder.to_get_request_information(RequestConfiguration(query_parameters=params))
        try:
            data = await self._json(request)
        except Exception as exc:
            error = classify(exc, write=False)
            if error.status == 404:
                return None
            if error.status == 403 and error.code == NON_PREMIUM:
                raise FeatureUnavailable(
                    "signInActivity", str(error), code=error.code, status=403, request_id=error.request_id
                ) from exc
            raise error from exc
        if not data.get("id"):
            return None
        return guest_from_json(data, with_sign_in=sign_in_activity)

    async def guest_pages(self, *, sign_in_activity: bool = True) -> AsyncIterator[list[GuestAccount]]:
        from .client import classify

        select = [*GUEST_FIELDS, "signInActivity"] if sign_in_activity else GUEST_FIELDS
        params = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            filter="userType eq 'Guest'", select=select, top=GUEST_PAGE_SIZE
        )
        request = self._client.users.to_get_request_information(RequestConfiguration(query_parameters=params))
        while True:
            try:
                data = await self._json(request)
            except Exception as exc:
                error = classify(exc, write=False)
                if error.status == 403 and error.code == NON_PREMIUM:
                    # A licence gate, not consent: never retried, never guessed around.
                    raise FeatureUnavailable(
                        "signInActivity", str(error), code=error.code, status=403, request_id=error.request_id
                    ) from exc
                raise error from exc
            rows = data.get("value") or []
            yield [guest_from_json(row, with_sign_in=sign_in_activity) for row in rows if row.get("id")]
            next_link = data.get("@odata.nextLink")
            if not next_link:
                return
            request = self._client.users.with_url(str(next_link)).to_get_request_information()

    async def member_of(self, user_id: str) -> list[Membership]:
        from .client import classify

        builder: Any = self._client.users.by_user_id(user_id).member_of
        found: list[Membership] = []
        while True:
            try:
                data = await self._json(builder.to_get_request_information())
            except Exception as exc:
                raise classify(exc, write=False) from exc
            found += [Membership(str(o["id"]), o.get("@odata.type")) for o in data.get("value") or [] if o.get("id")]
            next_link = data.get("@odata.nextLink")
            if not next_link:
                return found
            builder = builder.with_url(str(next_link))
