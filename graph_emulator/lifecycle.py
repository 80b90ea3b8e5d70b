"""The emulator's guest-lifecycle surface: disabled accounts, deleted items, memberships, sign-in activity.

Graph endpoints (under ``/v1.0``, registered by ``GraphEmulator.make_app``):

* ``GET /users?$filter=userType eq 'Guest'&$select=...`` pages by ``$top`` with ``@odata.nextLink``
  (``$skiptoken``); ``signInActivity`` comes only on ``$select`` and, without the tenant's premium
  licence (``Config.premium_licence``), the request fails with the documented 403
  ``Authentication_RequestFromNonPremiumTenantOrB2CTenant`` (also on ``GET /users/{id}``).
* ``DELETE /users/{id}`` moves the user to deleted items (``deletedDateTime``), out of its groups;
  ``GET /directory/deletedItems/{id}`` reads it, ``POST .../restore`` (or ``.../microsoft.graph.restore``)
  brings it back with its groups, within 30 days of the emulator's clock; later it is gone for good.
  ``GET /directory/deletedItems/microsoft.graph.user`` lists them.
* ``GET /users/{id}/memberOf`` lists the user's groups (``#microsoft.graph.group``).
* ``DELETE /groups/{gid}/members/{uid}/$ref`` removes the membership (204; 404 when not a member).
  Without ``/$ref`` the emulator does what Graph does for an app that may also delete users: it
  deletes the user (FACTS.md, Guest lifecycle), so a client that drops ``/$ref`` is caught.

Control endpoints (no auth): ``PUT /_emulator/users/{id}/signInActivity`` sets a user's sign-in
activity (``{}`` or ``null`` removes it: never signed in); ``POST /_emulator/users/{id}/redeem``
flips ``externalUserState`` to ``Accepted``; ``POST /_emulator/clock`` with ``{"advanceSeconds": N}``
moves the emulator's clock (deleted items age by it); ``GET /_emulator/deleted`` lists deleted items.
Response bodies conform to the extract's ``user-collection-response``,
``directory-object-collection-response`` and ``directory-object-response``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .server import REC, RID, graph_error

if TYPE_CHECKING:
    from .server import GraphEmulator

DELETED_RETENTION_SECONDS = 30 * 86400  # deleted items are restorable for 30 days, then purged
NON_PREMIUM_CODE = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
NON_PREMIUM_MESSAGE = "Neither tenant is B2C or tenant doesn't have premium license"
GUEST_FILTER = "usertype eq 'guest'"
DEFAULT_PAGE = 100
OPERATIONS = ("list-guests", "user-delete", "deleted-item", "restore", "member-of", "group-member-remove")


def iso(seconds: float) -> str:
    """Graph's UTC timestamp form."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Lifecycle:
    """Lifecycle state (deleted items, the clock's offset) and handlers, over one ``GraphEmulator``."""

    def __init__(self, emulator: GraphEmulator) -> None:
        self.em = emulator
        self.reset()

    def reset(self) -> None:
        # id -> {"user": ..., "deleted": epoch seconds, "groups": [group ids]}
        self.deleted: dict[str, dict[str, Any]] = {}
        self.offset = 0.0

    def now(self) -> float:
        """The emulator's clock: wall time plus what ``/_emulator/clock`` advanced."""
        return time.time() + self.offset

    # ------------------------------------------------------------------ hooks used by server.py
    @staticmethod
    def selects_sign_in(request: web.Request) -> bool:
        select = request.query.get("$select") or ""
        return "signinactivity" in (s.strip().lower() for s in select.split(","))

    def licence_refusal(self, request: web.Request) -> web.Response | None:
        """The documented 403 when ``signInActivity`` is selected in a tenant without the premium licence."""
        if self.selects_sign_in(request) and not self.em.config.premium_licence:
            return graph_error(403, NON_PREMIUM_CODE, NON_PREMIUM_MESSAGE, request[RID])
        return None

    def is_guest_query(self, request: web.Request) -> bool:
        raw = " ".join((request.query.get("$filter") or "").lower().split())
        return raw == GUEST_FILTER or (not raw and self.selects_sign_in(request))

    # ------------------------------------------------------------------ GET /users (guests, paged)
    async def list_guests(self, request: web.Request) -> web.StreamResponse:
        request[REC].operation = "list-guests"
        return await self.em._faulted("list-guests", None, request, lambda: self._list_guests(request))

    def _list_guests(self, request: web.Request) -> web.Response:
        rid = request[RID]
        refused = self.licence_refusal(request)
        if refused is not None:
            return refused
        guests_only = bool(request.query.get("$filter"))
        users = [u for u in self.em.users.values() if not guests_only or u.get("userType") == "Guest"]
        top = int(request.query.get("$top", str(DEFAULT_PAGE)))
        start = int(request.query.get("$skiptoken", "0"))
        page = users[start : start + top]
        body: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
            "value": [self.em._select(u, request.query.get("$select")) for u in page],
        }
        if start + top < len(users):
            query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
            body["@odata.nextLink"] = str(
                request.url.with_query({**query, "$skiptoken": str(start + top)}).with_scheme(request.scheme)
            )
        return web.json_response(body, headers={"request-id": rid})

    # ------------------------------------------------------------------ DELETE /users/{id}
    async def delete_user(self, request: web.Request) -> web.StreamResponse:
        request[REC].operation = "user-delete"
        return await self.em._faulted("user-delete", None, request, lambda: self._delete_user(request))

    def _delete_user(self, request: web.Request) -> web.Response:
        rid = request[RID]
        user = self.em._user_by_key(request.match_info["user_id"])
        if user is None:
            return self.em._not_found(rid, request.match_info["user_id"])
        throttled, used = self.em._throttle(rid)
        if throttled is not None:
            return throttled
        self._move_to_deleted(user)
        return web.Response(status=204, headers=self.em._write_headers(rid, used))

    def _move_to_deleted(self, user: dict[str, Any]) -> None:
        groups = [gid for gid, members in self.em.groups.items() if user["id"] in members]
        for gid in groups:
            self.em.groups[gid].discard(user["id"])
        del self.em.users[user["id"]]
        self.deleted[user["id"]] = {"user": user, "deleted": self.now(), "groups": groups}

    def _deleted(self, object_id: str) -> dict[str, Any] | None:
        """A deleted item still within its 30 days; older ones are purged, as Graph does."""
        item = self.deleted.get(object_id)
        if item is not None and self.now() - item["deleted"] > DELETED_RETENTION_SECONDS:
            del self.deleted[object_id]
            return None
        return item

    def _deleted_body(self, item: dict[str, Any]) -> dict[str, Any]:
        user = item["user"]
        return {
            "@odata.type": "#microsoft.graph.user",
            "id": user["id"],
            "displayName": user.get("displayName"),
            "mail": user.get("mail"),
            "userPrincipalName": user.get("userPrincipalName"),
            "userType": user.get("userType"),
            "deletedDateTime": iso(item["deleted"]),
        }

    # ------------------------------------------------------------------ deleted items
    async def get_deleted(self, request: web.Request) -> web.StreamResponse:
        request[REC].operation = "deleted-item"

        def perform() -> web.Response:
            item = self._deleted(request.match_info["object_id"])
            if item is None:
                return self.em._not_found(request[RID], request.match_info["object_id"])
            return web.json_response(self._deleted_body(item), headers={"request-id": request[RID]})

        return await self.em._faulted("deleted-item", None, request, perform)

    async def list_deleted_users(self, request: web.Request) -> web.Response:
        request[REC].operation = "deleted-users"
        items = [item for oid in list(self.deleted) if (item := self._deleted(oid)) is not None]
        return web.json_response(
            {
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
                "value": [self._deleted_body(i) for i in items],
            },
            headers={"request-id": request[RID]},
        )

    async def restore(self, request: web.Request) -> web.StreamResponse:
        request[REC].operation = "restore"
        await self.em._read_json(request, request[REC], request[RID])
        return await self.em._faulted("restore", None, request, lambda: self._restore(request))

    def _restore(self, request: web.Request) -> web.Response:
        rid = request[RID]
        item = self._deleted(request.match_info["object_id"])
        if item is None:
            return self.em._not_found(rid, request.match_info["object_id"])
        throttled, used = self.em._throttle(rid)
        if throttled is not None:
            return throttled
        del self.deleted[item["user"]["id"]]
        user = item["user"]
        self.em.users[user["id"]] = user
        for gid in item["groups"]:  # restored within 30 days it rejoins its groups
            self.em.groups.setdefault(gid, set()).add(user["id"])
        body = {**self._deleted_body(item), "deletedDateTime": None}
        return web.json_response(body, headers=self.em._write_headers(rid, used))

    # ------------------------------------------------------------------ memberships
    async def member_of(self, request: web.Request) -> web.StreamResponse:
        request[REC].operation = "member-of"

        def perform() -> web.Response:
            user = self.em._user_by_key(request.match_info["user_id"])
            if user is None:
                return self.em._not_found(request[RID], request.match_info["user_id"])
            groups = sorted(gid for gid, members in self.em.groups.items() if user["id"] in members)
            return web.json_response(
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
                    "value": [{"@odata.type": "#microsoft.graph.group", "id": gid} for gid in groups],
                },
                headers={"request-id": request[RID]},
            )

        return await self.em._faulted("member-of", None, request, perform)

    async def remove_member(self, request: web.Request) -> web.StreamResponse:
        request[REC].operation = "group-member-remove"
        return await self.em._faulted("group-member-remove", None, request, lambda: self._remove_member(request))

    def _remove_member(self, request: web.Request) -> web.Response:
        rid = request[RID]
        group_id, member_id = request.match_info["group_id"], request.match_info["member_id"]
        members = self.em.groups.get(group_id)
        if members is None or member_id not in members:
            return self.em._not_found(rid, member_id)
        throttled, used = self.em._throttle(rid)
        if throttled is not None:
            return throttled
        members.discard(member_id)
        return web.Response(status=204, headers=self.em._write_headers(rid, used))

    async def delete_member_object(self, request: web.Request) -> web.Response:
        """``DELETE /groups/{gid}/members/{uid}`` without ``/$ref``: Graph deletes the object itself."""
        request[REC].operation = "group-member-delete-object"
        rid = request[RID]
        user = self.em.users.get(request.match_info["member_id"])
        if user is None:
            return self.em._not_found(rid, request.match_info["member_id"])
        self._move_to_deleted(user)
        return web.Response(status=204, headers=self.em._write_headers(rid))

    # ------------------------------------------------------------------ control
    async def ctl_sign_in(self, request: web.Request) -> web.Response:
        user = self.em.users.get(request.match_info["user_id"])
        if user is None:
            return web.json_response({"error": "no such user"}, status=404)
        activity = await request.json()
        if activity:
            user["signInActivity"] = activity
        else:
            user.pop("signInActivity", None)
        return web.json_response(user)

    async def ctl_redeem(self, request: web.Request) -> web.Response:
        user = self.em.users.get(request.match_info["user_id"])
        if user is None:
            return web.json_response({"error": "no such user"}, status=404)
        user["externalUserState"] = "Accepted"
        user["externalUserStateChangeDateTime"] = iso(self.now())
        return web.json_response(user)

    async def ctl_clock(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            self.offset += float((await request.json()).get("advanceSeconds", 0))
        return web.json_response({"now": iso(self.now()), "offsetSeconds": self.offset})

    async def ctl_deleted(self, _: web.Request) -> web.Response:
        return web.json_response({oid: {**i, "deletedDateTime": iso(i["deleted"])} for oid, i in self.deleted.items()})

    def register(self, router: web.UrlDispatcher) -> None:
        """Add the lifecycle routes (before ``/users/{id}``'s, which would otherwise shadow nothing here)."""
        router.add_delete("/v1.0/users/{user_id}", self.delete_user)
        router.add_get("/v1.0/users/{user_id}/memberOf", self.member_of)
        router.add_get("/v1.0/directory/deletedItems/microsoft.graph.user", self.list_deleted_users)
        router.add_get("/v1.0/directory/deletedItems/{object_id}", self.get_deleted)
        router.add_post("/v1.0/directory/deletedItems/{object_id}/restore", self.restore)
        router.add_post("/v1.0/directory/deletedItems/{object_id}/microsoft.graph.restore", self.restore)
        router.add_delete("/v1.0/groups/{group_id}/members/{member_id}/$ref", self.remove_member)
        router.add_delete("/v1.0/groups/{group_id}/members/{member_id}", self.delete_member_object)
        router.add_put("/_emulator/users/{user_id}/signInActivity", self.ctl_sign_in)
        router.add_post("/_emulator/users/{user_id}/redeem", self.ctl_redeem)
        router.add_route("*", "/_emulator/clock", self.ctl_clock)
        router.add_get("/_emulator/deleted", self.ctl_deleted)
