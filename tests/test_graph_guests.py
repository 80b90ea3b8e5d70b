"""The guest lifecycle's Graph calls: the real msgraph-sdk client against the emulator over HTTP.

Request bodies are checked by the emulator (and the ``emulator`` fixture fails a test that sent one
Graph's schema refuses); response bodies are checked here against the extract's response operations.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from graph_emulator import schema
from graph_emulator.lifecycle import NON_PREMIUM_CODE
from graph_emulator.server import Fault, GraphEmulator
from shared.errors import AmbiguousGraphError, FeatureUnavailable, PermanentGraphError
from shared.graph.client import MsGraphDirectory, build_credential, build_graph_client, build_http_client
from shared.graph.directory import GuestAccount
from shared.graph.pacing import WritePacer
from shared.settings import Settings


@pytest.fixture
async def directory(settings: Settings, emulator: GraphEmulator):  # type: ignore[no-untyped-def]
    credential, http = build_credential(settings), build_http_client(settings)
    pacer = WritePacer(settings.graph_write_budget, settings.graph_write_window_seconds)
    yield MsGraphDirectory(build_graph_client(settings, credential, http), pacer, max_throttle_wait=5.0)
    await http.aclose()
    await credential.close()


def _guest(emulator: GraphEmulator, name: str = "sam", **props: Any) -> dict[str, Any]:
    return emulator.add_user(
        displayName=name,
        mail=f"{name}@fabrikam.com",
        userPrincipalName=f"{name}_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        userType="Guest",
        creationType="Invitation",
        externalUserState="PendingAcceptance",
        externalUserStateChangeDateTime="2026-11-01T08:00:00Z",
        createdDateTime="2026-11-01T08:00:00Z",
        **props,
    )


def _requests(emulator: GraphEmulator, operation: str) -> list[Any]:
    return [r for r in emulator.requests if r.operation == operation]


async def _all(directory: MsGraphDirectory, **kwargs: Any) -> list[list[GuestAccount]]:
    return [page async for page in directory.guest_pages(**kwargs)]


async def _raw(emulator: GraphEmulator, base: str, method: str, path: str) -> httpx.Response:
    token = emulator._issue("https://graph.microsoft.com", "tests")["access_token"]
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
        return await http.request(method, path)


async def test_block_and_unblock_sign_in_is_a_low_priority_patch(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    guest = _guest(emulator)
    await directory.set_sign_in_enabled(guest["id"], False)
    assert emulator.users[guest["id"]]["accountEnabled"] is False
    await directory.set_sign_in_enabled(guest["id"], True)
    assert emulator.users[guest["id"]]["accountEnabled"] is True
    patches = _requests(emulator, "user-update")
    # msgraph-sdk adds "@odata.type": "#microsoft.graph.user"; nothing else is sent.
    assert [(p.method, {k: v for k, v in p.body.items() if k != "@odata.type"}, p.status) for p in patches] == [
        ("PATCH", {"accountEnabled": False}, 204),
        ("PATCH", {"accountEnabled": True}, 204),
    ]
    assert all(p.findings == [] and p.headers["x-ms-throttle-priority"] == "low" for p in patches)


async def test_removing_a_membership_goes_through_ref_and_never_deletes_the_user(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    """Without /$ref the emulator deletes the user, as Graph does for an app allowed to: this catches it."""
    guest = _guest(emulator)
    emulator.groups["g-partners"] = {guest["id"]}
    assert await directory.remove_group_member("g-partners", guest["id"]) is True
    assert emulator.groups["g-partners"] == set()
    assert guest["id"] in emulator.users  # the member object is untouched
    assert await directory.remove_group_member("g-partners", guest["id"]) is False  # already gone: done
    [first, second] = _requests(emulator, "group-member-remove")
    assert first.method == "DELETE" and first.path == f"/v1.0/groups/g-partners/members/{guest['id']}/$ref"
    assert (first.status, second.status) == (204, 404)
    assert first.headers["x-ms-throttle-priority"] == "low"


async def test_delete_then_restore_within_thirty_days_brings_back_the_groups(
    directory: MsGraphDirectory, emulator: GraphEmulator, graph_base: str
) -> None:
    guest = _guest(emulator)
    emulator.groups["g-partners"] = {guest["id"]}
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert await directory.delete_user(guest["id"]) is True
    assert guest["id"] not in emulator.users and emulator.groups["g-partners"] == set()
    deleted = await directory.get_deleted_user(guest["id"])
    assert deleted is not None and deleted.deleted is not None and deleted.deleted >= before
    assert deleted.restorable_until == deleted.deleted + timedelta(days=30)
    body = (await _raw(emulator, graph_base, "GET", f"/v1.0/directory/deletedItems/{guest['id']}")).json()
    assert body["@odata.type"] == "#microsoft.graph.user"
    assert schema.errors("directory-object-response", body) == []

    restored = await directory.restore_deleted_user(guest["id"])
    assert restored.id == guest["id"] and restored.user_type == "Guest"
    assert emulator.groups["g-partners"] == {guest["id"]}
    assert await directory.get_deleted_user(guest["id"]) is None
    assert await directory.delete_user("no-such-user") is False
    [restore] = _requests(emulator, "restore")
    assert restore.path.endswith("/restore") and restore.headers["x-ms-throttle-priority"] == "low"
    assert [r.method for r in _requests(emulator, "user-delete")] == ["DELETE", "DELETE"]


async def test_after_thirty_days_a_deleted_user_cannot_be_restored(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    guest = _guest(emulator)
    await directory.delete_user(guest["id"])
    emulator.lifecycle.offset = 30 * 86400 + 60
    assert await directory.get_deleted_user(guest["id"]) is None
    with pytest.raises(PermanentGraphError) as gone:
        await directory.restore_deleted_user(guest["id"])
    assert gone.value.status == 404


async def test_a_delete_whose_answer_was_lost_is_ambiguous_and_a_second_try_finds_it_done(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    guest = _guest(emulator)
    emulator.faults.append(Fault("acted504", operation="user-delete", times=1, retry_after=None))
    with pytest.raises(AmbiguousGraphError):
        await directory.delete_user(guest["id"])
    assert await directory.delete_user(guest["id"]) is False
    assert await directory.get_deleted_user(guest["id"]) is not None


async def test_guests_with_sign_in_activity_are_read_page_by_page(
    directory: MsGraphDirectory, emulator: GraphEmulator, graph_base: str
) -> None:
    guests = [_guest(emulator, f"g{n:03}") for n in range(230)]
    emulator.add_user(displayName="Member", mail="m@contoso.com", userType="Member")
    guests[0]["signInActivity"] = {
        "lastSignInDateTime": "2026-11-20T10:00:00Z",
        "lastSignInRequestId": "r1",
        "lastNonInteractiveSignInDateTime": "2026-11-25T10:00:00Z",
        "lastNonInteractiveSignInRequestId": "r2",
    }
    guests[1]["signInActivity"] = {"lastSignInDateTime": "0001-01-01T00:00:00Z", "lastSignInRequestId": ""}
    pages = await _all(directory)
    assert [len(p) for p in pages] == [100, 100, 30]
    found = {g.id: g for page in pages for g in page}
    assert set(found) == {g["id"] for g in guests}
    first = found[guests[0]["id"]]
    assert first.sign_in is not None and first.sign_in.latest == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert found[guests[1]["id"]].sign_in is not None and found[guests[1]["id"]].sign_in.latest is None  # "never"
    assert found[guests[2]["id"]].sign_in is not None and found[guests[2]["id"]].sign_in.latest is None  # absent
    assert first.external_user_state == "PendingAcceptance" and first.account_enabled is True
    assert first.created == datetime(2026, 11, 1, 8, tzinfo=UTC)
    reads = _requests(emulator, "list-guests")
    assert len(reads) == 3 and "signInActivity" in reads[0].query["$select"]
    assert reads[0].query["$filter"] == "userType eq 'Guest'"
    page = (
        await _raw(
            emulator,
            graph_base,
            "GET",
            "/v1.0/" + reads[0].path.split("/v1.0/")[1] + "?" + "&".join(f"{k}={v}" for k, v in reads[0].query.items()),
        )
    ).json()
    assert schema.errors("user-collection-response", page) == []


async def test_without_the_premium_licence_sign_in_activity_is_reported_unavailable(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    """The documented 403 becomes FeatureUnavailable at once (no retry); without signInActivity it works."""
    _guest(emulator)
    emulator.config.premium_licence = False
    with pytest.raises(FeatureUnavailable) as unavailable:
        await _all(directory)
    assert unavailable.value.feature == "signInActivity" and unavailable.value.code == NON_PREMIUM_CODE
    assert isinstance(unavailable.value, PermanentGraphError) and unavailable.value.status == 403
    assert len(_requests(emulator, "list-guests")) == 1
    [[guest]] = await _all(directory, sign_in_activity=False)
    assert guest.sign_in is None and guest.external_user_state == "PendingAcceptance"


async def test_member_of_lists_the_groups_and_conforms(
    directory: MsGraphDirectory, emulator: GraphEmulator, graph_base: str
) -> None:
    guest = _guest(emulator)
    emulator.groups.update({"g-a": {guest["id"]}, "g-b": {guest["id"]}, "g-c": set()})
    memberships = await directory.member_of(guest["id"])
    assert sorted(m.id for m in memberships) == ["g-a", "g-b"] and all(m.is_group for m in memberships)
    body = (await _raw(emulator, graph_base, "GET", f"/v1.0/users/{guest['id']}/memberOf")).json()
    assert schema.errors("directory-object-collection-response", body) == []


async def test_redemption_and_sign_in_are_set_through_control_endpoints(
    directory: MsGraphDirectory, emulator: GraphEmulator, graph_base: str
) -> None:
    guest = _guest(emulator)
    async with httpx.AsyncClient(base_url=graph_base) as http:
        assert (await http.post(f"/_emulator/users/{guest['id']}/redeem")).status_code == 200
        activity = {"lastSuccessfulSignInDateTime": "2026-12-01T09:00:00Z", "lastSuccessfulSignInRequestId": "x"}
        assert (await http.put(f"/_emulator/users/{guest['id']}/signInActivity", json=activity)).status_code == 200
    [[seen]] = await _all(directory)
    assert seen.external_user_state == "Accepted" and seen.external_user_state_changed is not None
    assert seen.sign_in is not None and seen.sign_in.latest == datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_the_fake_and_the_real_directory_offer_every_method_of_the_protocol() -> None:
    from shared.graph.directory import Directory
    from tests.fakes import FakeDirectory

    wanted = {name for name in vars(Directory) if not name.startswith("_") and callable(getattr(Directory, name))}
    assert {"set_sign_in_enabled", "remove_group_member", "delete_user", "guest_pages"} <= wanted
    for implementation in (MsGraphDirectory, FakeDirectory):
        assert wanted <= set(dir(implementation)), implementation


async def test_the_fake_deletes_and_restores_with_the_groups_within_thirty_days() -> None:
    from tests.fakes import FakeDirectory

    fake = FakeDirectory()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    fake.guests.clock = lambda: now
    guest = fake.add_user("sam@fabrikam.com", "Guest", "Accepted")
    fake.members.add(("g-partners", guest.id))
    assert await fake.delete_user(guest.id) is True and fake.members == set()
    assert (await fake.restore_deleted_user(guest.id)).id == guest.id
    assert fake.members == {("g-partners", guest.id)}
    await fake.delete_user(guest.id)
    now += timedelta(days=31)
    assert await fake.get_deleted_user(guest.id) is None
    fake.guests.premium_licence = False
    with pytest.raises(FeatureUnavailable):
        [page async for page in fake.guest_pages()]


async def test_any_query_selecting_sign_in_activity_meets_the_licence_gate(
    emulator: GraphEmulator, graph_base: str
) -> None:
    emulator.config.premium_licence = False
    guest = _guest(emulator)
    for path in (
        "/v1.0/users?$filter=mail eq 'sam@fabrikam.com'&$select=id,signInActivity",
        f"/v1.0/users/{guest['id']}?$select=id,signInActivity",
        "/v1.0/users?$select=id,signInActivity",
    ):
        assert (await _raw(emulator, graph_base, "GET", path)).json()["error"]["code"] == NON_PREMIUM_CODE, path
    emulator.config.premium_licence = True
    body = (await _raw(emulator, graph_base, "GET", f"/v1.0/users/{guest['id']}?$select=id,signInActivity")).json()
    assert body == {"id": guest["id"], "signInActivity": None}
    assert schema.errors("user-with-signin-activity", body) == []


async def test_one_guest_is_read_with_the_lifecycle_fields_and_the_licence_gate(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    guest = _guest(emulator, "ria", accountEnabled=False)
    emulator.users[guest["id"]]["signInActivity"] = {"lastSignInDateTime": "2026-11-20T10:00:00Z"}
    account = await directory.get_guest(guest["id"], sign_in_activity=True)
    assert account is not None and account.id == guest["id"]
    assert (account.account_enabled, account.external_user_state) == (False, "PendingAcceptance")
    assert account.sign_in is not None and account.sign_in.latest is not None
    [read] = _requests(emulator, "get-user")
    assert "signInActivity" in read.query["$select"] and "accountEnabled" in read.query["$select"]
    assert read.status == 200 and read.findings == []
    assert await directory.get_guest("00000000-0000-4000-8000-000000000000") is None
    emulator.config.premium_licence = False
    with pytest.raises(FeatureUnavailable):
        await directory.get_guest(guest["id"], sign_in_activity=True)
    plain = await directory.get_guest(guest["id"])
    assert plain is not None and plain.sign_in is None
