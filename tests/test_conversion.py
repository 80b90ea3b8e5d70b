"""Converting internal users: the pre-checks against the emulator's directory (real msgraph-sdk over HTTP),
the invitation body with invitedUser.id against Microsoft's schema, the bulk command interrupted and resumed,
and the admin route through the local host."""

from __future__ import annotations

import asyncio
import csv
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph_emulator.populate import conversion_users, write_input
from graph_emulator.server import Fault, GraphEmulator
from shared.conversion import Code, ConversionOptions, Converter, precheck
from shared.graph.client import MsGraphDirectory, build_credential, build_graph_client, build_http_client
from shared.graph.directory import DirectoryUser, InvitationOptions
from shared.graph.pacing import WritePacer
from shared.settings import Settings
from tests.conftest import FUNCTION_KEY, host_env, running_host

ROOT = Path(__file__).resolve().parent.parent
BASE = InvitationOptions(redirect_url="https://myapps.microsoft.com")


@pytest.fixture
async def directory(settings: Settings, emulator: GraphEmulator) -> AsyncIterator[MsGraphDirectory]:
    credential, http = build_credential(settings), build_http_client(settings)
    pacer = WritePacer(settings.graph_write_budget, settings.graph_write_window_seconds)
    yield MsGraphDirectory(build_graph_client(settings, credential, http), pacer)
    await http.aclose()
    await credential.close()


def test_precheck_rules_in_order() -> None:
    """Each rule on its own, and the synced flag in the reason."""
    verified = frozenset({"contoso.com"})
    ok = DirectoryUser("1", "Member", "ann@fabrikam.com", "ann@contoso.com")
    assert precheck(ok, verified).code is Code.ELIGIBLE
    assert precheck(None, verified).code is Code.NOT_FOUND
    cases = {
        Code.ALREADY_EXTERNAL: DirectoryUser("1", "Member", "a@f.com", "a@contoso.com", None, "Accepted"),
        Code.IS_GUEST: DirectoryUser("1", "Guest", "a@f.com", "a@contoso.com"),
        Code.MAIL_MISSING: DirectoryUser("1", "Member", None, "a@contoso.com"),
        Code.MAIL_IN_VERIFIED_DOMAIN: DirectoryUser("1", "Member", "a@Contoso.com", "a@contoso.com"),
        Code.ON_PREMISES_UPN: DirectoryUser("1", "Member", "a@f.com", "a@contoso.com", "a@corp.local", None, True),
    }
    for code, user in cases.items():
        assert precheck(user, verified).code is code, code
    assert precheck(ok, verified, "someone.else@fabrikam.com").code is Code.MAIL_MISMATCH
    assert precheck(ok, verified, "ANN@fabrikam.com").code is Code.ELIGIBLE
    synced = precheck(cases[Code.ON_PREMISES_UPN], verified)
    assert synced.synced and "reset the on-premises password" in synced.reason


async def test_every_precheck_against_the_emulators_directory(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    """Users passing and failing each rule, read through msgraph-sdk by object id and by UPN."""
    users = conversion_users(22)
    emulator.seed(users)
    converter = Converter(directory, BASE, priority="low")
    for i, user in enumerate(users):
        reference = user["id"] if i % 2 else user["userPrincipalName"]
        verdict = await converter.check(reference)
        assert verdict.code.value == user["expected"], (user, verdict)
    assert (await converter.check("nobody@contoso.com")).code is Code.NOT_FOUND
    assert [r for r in emulator.requests if r.method != "GET"] == []  # checks never write


async def test_conversion_body_conforms_and_keeps_the_object_id(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    [user] = emulator.seed(conversion_users(1)) and list(emulator.users.values())
    converter = Converter(directory, BASE, priority="low")
    verdict = await converter.check(user["id"])
    result = await converter.convert(verdict, ConversionOptions(send_message=True, message_language="de-DE"))
    await converter.make_guest(user["id"])
    assert result.invited_user_id == user["id"] and emulator.users[user["id"]]["externalUserState"]
    assert emulator.users[user["id"]]["userType"] == "Guest"
    [post] = [r for r in emulator.requests if r.operation == "invitation"]
    assert post.findings == []  # Microsoft's schema accepts it (the emulator fixture also checks every body)
    assert post.body["invitedUser"]["id"] == user["id"]
    assert post.body["invitedUserEmailAddress"] == user["mail"]
    assert post.body["sendInvitationMessage"] is True
    assert post.headers.get("x-ms-throttle-priority") == "low"
    again = await converter.check(user["id"])
    assert again.code is Code.ALREADY_EXTERNAL  # a second run cannot convert it twice


def _rows(report: Path) -> list[dict[str, str]]:
    with report.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def _convert(env: dict[str, str], args: list[str], interrupt_after: int | None = None, kill: bool = False) -> int:
    """Run ``signup-admin convert`` as a process; interrupt it (Ctrl-C, or SIGKILL) after that many report rows."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.admin.cli",
        "convert",
        *args,
        env=env,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if interrupt_after is not None:
        report = Path(args[args.index("--report") + 1])
        for _ in range(600):
            await asyncio.sleep(0.05)
            if await asyncio.to_thread(_lines, report) > interrupt_after:
                break
        process.send_signal(signal.SIGKILL if kill else signal.SIGINT)
    return await asyncio.wait_for(process.wait(), 120)


@pytest.mark.faults
async def test_bulk_interrupted_and_resumed_converts_each_user_exactly_once(
    azurite: str, graph_base: str, emulator: GraphEmulator, tmp_path: Path
) -> None:
    """220 users, lost answers and 503s injected; Ctrl-C, then a crash (SIGKILL), then runs until done.

    The final report has every eligible user Converted and every ineligible one with its rule; Graph performed
    exactly one invitation per eligible user and none for the others.
    """
    users = conversion_users(220)
    emulator.seed(users)
    source, report, dry = tmp_path / "users.csv", tmp_path / "report.csv", tmp_path / "dry.csv"
    write_input(users, source)
    env = {k: v for k, v in host_env(azurite, graph_base).items() if not k.startswith("DEVHOST_")}
    env["GRAPH_PACING_MODE"] = "local"
    env["PYTHONPATH"] = str(ROOT)

    assert await _convert(env, [str(source), "--report", str(dry), "--dry-run"]) == 1  # some are ineligible
    assert [r for r in emulator.requests if r.operation == "invitation"] == []
    dry_outcomes = Counter(r["outcome"] for r in _rows(dry))
    eligible = [u for u in users if u["expected"] == "Eligible"]
    assert dry_outcomes["WouldConvert"] == len(eligible)

    emulator.faults += [
        Fault("acted504", operation="invitation", rate=0.08),
        Fault("503", operation="invitation", rate=0.05, retry_after=None),
    ]
    args = [str(source), "--report", str(report), "--concurrency", "6"]
    assert await _convert(env, args, interrupt_after=60) == 130
    await _convert(env, args, interrupt_after=130, kill=True)
    emulator.faults.clear()
    for _ in range(4):
        if await _convert(env, args) in (0, 1):
            last = {row["user"]: row for row in _rows(report)}
            if not any(row["outcome"] in {"Attempting", "Unknown", "Deferred"} for row in last.values()):
                break
    last = {row["user"]: row for row in _rows(report)}
    performed = Counter(inv["user_id"] for inv in emulator.invitations)
    for i, user in enumerate(users):
        reference = user["userPrincipalName"] if i % 2 else user["id"]
        expected = "Converted" if user["expected"] == "Eligible" else user["expected"]
        assert last[reference]["outcome"] == expected, (reference, last[reference])
        assert performed[user["id"]] == (1 if user["expected"] == "Eligible" else 0), reference
    assert sum(performed.values()) == len(eligible)


@pytest.fixture(scope="module")
async def host(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    async with running_host(host_env(azurite, emulator_server[1]), tmp_path_factory.mktemp("convert")) as (_, url):
        yield url


@pytest.mark.e2e
async def test_the_admin_route_converts_one_user(host: str, emulator: GraphEmulator) -> None:
    users = conversion_users(11)
    emulator.seed(users)
    eligible, on_premises = users[0], users[10]
    key = {"x-functions-key": FUNCTION_KEY}
    async with httpx.AsyncClient(base_url=host, timeout=10) as http:
        assert (await http.post("/api/manage/conversions", json={"user": eligible["id"]})).status_code == 401
        bad = await http.post("/api/manage/conversions", json={"user": "not a user"}, headers=key)
        assert bad.status_code == 400 and "user" in bad.json()["errors"]
        results: dict[str, dict[str, Any]] = {}
        for user in (eligible, on_premises):
            body = {"user": user["userPrincipalName"], "setGuestUserType": True}
            accepted = await http.post("/api/manage/conversions", json=body, headers=key)
            assert accepted.status_code == 202, accepted.text
            status_url = accepted.json()["statusUrl"]
            for _ in range(150):
                view = (await http.get(status_url, headers=key)).json()
                if view["status"] in {"invited", "failed"}:
                    break
                await asyncio.sleep(0.2)
            results[user["id"]] = view
    assert results[eligible["id"]]["status"] == "invited"
    assert results[eligible["id"]]["invitation"]["invitedUserId"] == eligible["id"]
    assert emulator.users[eligible["id"]]["userType"] == "Guest"
    assert results[on_premises["id"]]["status"] == "failed"
    assert results[on_premises["id"]]["error"]["code"] == "OnPremisesUpn"
    posts = [r for r in emulator.requests if r.operation == "invitation"]
    assert [p.body["invitedUser"]["id"] for p in posts] == [eligible["id"]]  # nothing written for the other
    assert posts[0].body["sendInvitationMessage"] is False
