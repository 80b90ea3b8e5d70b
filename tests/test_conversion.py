"""Converting internal users, against the emulator's directory (real msgraph-sdk over HTTP): the pre-checks and
Microsoft's "already external" rule, the invitation body against Microsoft's schema, the bulk run's duplicates,
doubts, userType, mail choice, permission stops and report file, and the admin route through the local host.
The command-line behaviour (exit codes, Ctrl-C, dry run, input files) is in test_conversion_cli.py."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph_emulator.populate import conversion_users, write_input
from graph_emulator.server import Fault, GraphEmulator
from shared.conversion import Code, ConversionOptions, Converter, parse_conversion_request, precheck
from shared.conversion.bulk import BulkConversion, Summary
from shared.conversion.mailing import OrganisationMail
from shared.conversion.report import FIELDS, ReportState, ReportWriter, detect_input, read_users
from shared.errors import PermanentGraphError
from shared.graph.client import MsGraphDirectory, build_credential, build_graph_client, build_http_client
from shared.graph.directory import DirectoryUser, InvitationOptions
from shared.graph.pacing import WritePacer
from shared.policy.document import MailTemplate
from shared.settings import Settings
from tests.conftest import FUNCTION_KEY, host_env, running_host

# The settings' sign-up options: a message body and a cc that a conversion must not carry.
BASE = InvitationOptions(
    redirect_url="https://myapps.microsoft.com", message_body="Welcome, sign-up guest", cc_address="cc@contoso.com"
)
MICROSOFT = ConversionOptions(send_message=True)
NO_MAIL = ConversionOptions(send_message=False)
FEDERATED = (("federated", "ExternalAzureAD"),)
CONVERSION_POLICY = str(Path(__file__).resolve().parent / "policies" / "conversion.json")


@pytest.fixture
async def directory(settings: Settings, emulator: GraphEmulator) -> AsyncIterator[MsGraphDirectory]:
    credential, http = build_credential(settings), build_http_client(settings)
    pacer = WritePacer(settings.graph_write_budget, settings.graph_write_window_seconds)
    yield MsGraphDirectory(build_graph_client(settings, credential, http), pacer)
    await http.aclose()
    await credential.close()


def rows(report: Path) -> list[dict[str, str]]:
    with report.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def last_rows(report: Path) -> dict[str, dict[str, str]]:
    return {row["user"]: row for row in rows(report)}


def posts(emulator: GraphEmulator) -> list[Any]:
    return [r for r in emulator.requests if r.operation == "invitation"]


async def run_bulk(
    directory: MsGraphDirectory,
    references: list[str],
    report: Path,
    options: ConversionOptions = MICROSOFT,
    **kw: Any,
) -> Summary:
    writer = ReportWriter(report)
    try:
        bulk = BulkConversion(Converter(directory, BASE, priority="low"), options, ReportState(report), writer, **kw)
        return await bulk.run(iter([(r, None) for r in references]))
    finally:
        writer.close()


# -- the pre-checks ------------------------------------------------------------------------------


def test_precheck_rules_blocking_first_and_internal_guests_eligible() -> None:
    verified = frozenset({"contoso.com"})
    ok = DirectoryUser("1", "Member", "ann@fabrikam.com", "ann@contoso.com")
    assert precheck(ok, verified).code is Code.ELIGIBLE
    # Microsoft's target: a partner account with internal credentials, userType Guest.
    assert precheck(DirectoryUser("1", "Guest", "a@f.com", "a@contoso.com"), verified).code is Code.ELIGIBLE
    assert precheck(None, verified).code is Code.NOT_FOUND
    external = {
        "state": DirectoryUser("1", "Member", "a@f.com", "a@contoso.com", None, "Accepted"),
        "creation": DirectoryUser("1", "Guest", "a@f.com", "a@contoso.com", creation_type="Invitation"),
        "identity": DirectoryUser("1", "Member", "a@f.com", "a@contoso.com", identities=FEDERATED),
    }
    for kind, user in external.items():
        assert precheck(user, verified).code is Code.ALREADY_EXTERNAL, kind
    internal_identity = DirectoryUser("1", "Guest", "a@f.com", "a@c.com", identities=(("userPrincipalName", "c"),))
    assert precheck(internal_identity, verified).code is Code.ELIGIBLE
    # Blocking rules come before the ones an admin can fix (mail).
    synced_no_mail = DirectoryUser("1", "Member", None, "a@contoso.com", "a@corp.local", None, True)
    assert precheck(synced_no_mail, verified).code is Code.ON_PREMISES_UPN
    external_no_mail = DirectoryUser("1", "Member", None, "a@contoso.com", None, "PendingAcceptance")
    assert precheck(external_no_mail, verified).code is Code.ALREADY_EXTERNAL
    assert precheck(DirectoryUser("1", "Member", None, "a@c.com"), verified).code is Code.MAIL_MISSING
    assert precheck(DirectoryUser("1", "Member", "a@Contoso.com", "a@c.com"), verified).code is (
        Code.MAIL_IN_VERIFIED_DOMAIN
    )
    assert precheck(ok, verified, "someone.else@fabrikam.com").code is Code.MAIL_MISMATCH
    assert precheck(ok, verified, "ANN@fabrikam.com").code is Code.ELIGIBLE
    synced = precheck(DirectoryUser("1", "Member", "a@f.com", "a@c.com", on_premises_sync_enabled=True), verified)
    assert synced.synced and "random value" in synced.reason


async def test_every_kind_against_the_emulators_directory(directory: MsGraphDirectory, emulator: GraphEmulator) -> None:
    """Internal guests pass; already-external users of each kind are refused; read by object id and by UPN."""
    users = conversion_users(28)
    emulator.seed(users)
    converter = Converter(directory, BASE, priority="low")
    for i, user in enumerate(users):
        verdict = await converter.check(user["id"] if i % 2 else user["userPrincipalName"])
        assert verdict.code.value == user["expected"], (user, verdict)
    assert {u["userType"] for u in users if u["expected"] == "Eligible"} == {"Guest", "Member"}
    assert (await converter.check("nobody@contoso.com")).code is Code.NOT_FOUND
    assert [r for r in emulator.requests if r.method != "GET"] == []  # checks never write


async def test_verified_domains_one_read_for_concurrent_callers(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    emulator.config.latency_ms = 50
    results = await asyncio.gather(*(directory.verified_domains() for _ in range(20)))
    assert len(set(results)) == 1 and "contoso.com" in results[0]
    assert len([r for r in emulator.requests if r.path.endswith("/domains")]) == 1


# -- the invitation ------------------------------------------------------------------------------


async def test_conversion_sends_only_what_microsoft_documents(
    directory: MsGraphDirectory, emulator: GraphEmulator
) -> None:
    """No invitedUserType (userType stays), no sign-up message body or cc; Microsoft's mail with its language."""
    users = conversion_users(3)  # Member, Member, internal Guest
    emulator.seed(users)
    converter = Converter(directory, BASE, priority="low")
    for user in (users[0], users[2]):
        verdict = await converter.check(user["id"])
        result = await converter.convert(verdict, ConversionOptions(send_message=True, message_language="de-DE"))
        assert result.invited_user_id == user["id"] and emulator.users[user["id"]]["externalUserState"]
        assert emulator.users[user["id"]]["userType"] == user["userType"]  # conversion does not change it
        assert (await converter.check(user["id"])).code is Code.ALREADY_EXTERNAL  # never twice
    for post in posts(emulator):
        assert post.findings == []  # Microsoft's schema accepts it
        assert "invitedUserType" not in post.body
        assert post.body["invitedUserMessageInfo"] == {"messageLanguage": "de-DE"}
        assert post.body["sendInvitationMessage"] is True
        assert post.headers.get("x-ms-throttle-priority") == "low"
    assert [p.body["invitedUser"]["id"] for p in posts(emulator)] == [users[0]["id"], users[2]["id"]]
    await converter.make_guest(users[0]["id"])
    assert emulator.users[users[0]["id"]]["userType"] == "Guest"  # only when asked


async def test_an_answer_naming_another_user_is_refused(directory: MsGraphDirectory, emulator: GraphEmulator) -> None:
    [user] = conversion_users(1)
    emulator.seed([user])
    emulator.faults.append(Fault("misdirected", operation="invitation"))
    converter = Converter(directory, BASE, priority="low")
    with pytest.raises(PermanentGraphError) as caught:
        await converter.convert(await converter.check(user["id"]), MICROSOFT)
    assert caught.value.code == "InvitedUserMismatch"


def test_route_accepts_mail_profile_and_defaults_to_microsofts_mail() -> None:
    ref = "ann@contoso.com"
    _, _, options = parse_conversion_request("application/json", b'{"user": "%s"}' % ref.encode())
    assert options.send_message is True  # the document's default
    _, _, options = parse_conversion_request("application/json", b'{"user": "ann@contoso.com", "mailProfile": "p"}')
    assert options.mail_profile == "p" and options.send_message is False
    quiet = b'{"user": "ann@contoso.com", "sendInvitationMessage": false}'
    assert parse_conversion_request("application/json", quiet)[2].send_message is False


# -- the bulk run --------------------------------------------------------------------------------


async def test_same_user_by_id_and_upn_is_converted_once(
    directory: MsGraphDirectory, emulator: GraphEmulator, tmp_path: Path
) -> None:
    users = conversion_users(14)
    emulator.seed(users)
    source, report = tmp_path / "users.csv", tmp_path / "report.csv"
    write_input(users, source, twice_every=1)  # every user named twice
    fmt = detect_input(source)
    references = [user for user, _ in read_users(source, fmt)]
    assert len(references) == 2 * len(users)
    summary = await run_bulk(directory, references, report, concurrency=8)
    eligible = [u for u in users if u["expected"] == "Eligible"]
    assert Counter(p.body["invitedUser"]["id"] for p in posts(emulator)) == {u["id"]: 1 for u in eligible}
    assert summary.outcomes["Failed"] == 0 and summary.outcomes["Duplicate"] == len(users) - 0
    # Across runs too: a user converted under one name, named by the other in a later file.
    later = tmp_path / "later.csv"
    await run_bulk(directory, [users[0]["id"]], later)
    again = await run_bulk(directory, [users[0]["userPrincipalName"]], later)
    assert again.outcomes == Counter({"Duplicate": 1}) and len(posts(emulator)) == len(eligible)


async def test_a_failed_reread_keeps_the_doubt(
    directory: MsGraphDirectory, emulator: GraphEmulator, tmp_path: Path
) -> None:
    [user] = emulator.seed(conversion_users(1)) and list(emulator.users.values())
    report = tmp_path / "report.csv"
    writer = ReportWriter(report)
    writer.write(user=user["id"], outcome="Attempting")  # a run sent it and lost the answer
    writer.close()
    user["externalUserState"] = "PendingAcceptance"  # Graph had acted
    emulator.faults.append(Fault("503", operation="get-user", times=1, retry_after=None))
    first = await run_bulk(directory, [user["id"]], report, NO_MAIL)
    assert first.outcomes == Counter({"Unknown": 1}) and first.exit_code() == 2
    second = await run_bulk(directory, [user["id"]], report, NO_MAIL)
    assert second.outcomes == Counter({"Converted": 1})
    assert last_rows(report)[user["id"]]["redeemUrl"].startswith("https://login.microsoftonline.com/redeem")
    [reset] = posts(emulator)  # no second conversion; a silent reset for a redeem URL the admin can use
    assert reset.body["resetRedemption"] is True and reset.body["sendInvitationMessage"] is False


@pytest.mark.parametrize("acted", [True, False])
async def test_a_doubt_under_one_name_survives_a_duplicate_row_under_the_other(
    directory: MsGraphDirectory, emulator: GraphEmulator, tmp_path: Path, acted: bool
) -> None:
    """Ctrl-C twice left the user's first name Attempting while its second name was written Duplicate."""
    [user] = emulator.seed(conversion_users(1)) and list(emulator.users.values())
    report = tmp_path / "report.csv"
    writer = ReportWriter(report)
    writer.write(user=user["id"], outcome="Attempting", userId=user["id"])
    writer.write(user=user["userPrincipalName"], outcome="Duplicate", userId=user["id"])
    writer.close()
    if acted:
        user["externalUserState"] = "PendingAcceptance"
    summary = await run_bulk(directory, [user["id"], user["userPrincipalName"]], report)
    assert summary.outcomes == Counter({"Converted": 1}) and summary.skipped == 1
    assert last_rows(report)[user["id"]]["outcome"] == "Converted"
    assert len(posts(emulator)) == (0 if acted else 1)  # converted exactly once either way


async def test_a_failed_user_type_change_is_retried(
    directory: MsGraphDirectory, emulator: GraphEmulator, tmp_path: Path
) -> None:
    [user] = emulator.seed(conversion_users(1)) and list(emulator.users.values())
    report = tmp_path / "report.csv"
    options = ConversionOptions(send_message=True, set_guest_user_type=True)
    emulator.faults.append(Fault("503", operation="user-update", times=1, retry_after=None))
    first = await run_bulk(directory, [user["id"]], report, options)
    assert first.outcomes == Counter({"UserTypePending": 1}) and first.exit_code() == 2
    assert emulator.users[user["id"]]["userType"] == "Member"
    second = await run_bulk(directory, [user["id"]], report, options)
    assert second.outcomes == Counter({"Converted": 1}) and emulator.users[user["id"]]["userType"] == "Guest"
    assert len(posts(emulator)) == 1 and last_rows(report)[user["id"]]["delivery"] == "microsoft"


async def test_a_permission_error_stops_the_run_and_settles_nothing(
    directory: MsGraphDirectory, emulator: GraphEmulator, tmp_path: Path
) -> None:
    users = conversion_users(40)
    emulator.seed(users)
    references = [u["id"] for u in users]
    report = tmp_path / "report.csv"
    emulator.faults.append(Fault("403", operation="invitation"))
    stopped = await run_bulk(directory, references, report, concurrency=2)
    assert stopped.fatal is not None and stopped.fatal.status == 403 and stopped.exit_code() == 3
    assert len(posts(emulator)) <= 2  # the ones in flight; nothing new started
    assert not {row["outcome"] for row in rows(report)} & {"Failed", "Converted"}
    emulator.faults.clear()
    done = await run_bulk(directory, references, report, concurrency=4)
    eligible = sum(1 for u in users if u["expected"] == "Eligible")
    assert done.outcomes["Converted"] == eligible and done.exit_code() == 1  # 1: some refused by a pre-check


async def test_retry_failed_takes_up_failed_rows(
    directory: MsGraphDirectory, emulator: GraphEmulator, tmp_path: Path
) -> None:
    [user] = emulator.seed(conversion_users(1)) and list(emulator.users.values())
    report = tmp_path / "report.csv"
    emulator.faults.append(Fault("400", operation="invitation", times=1))
    failed = await run_bulk(directory, [user["id"]], report)
    assert failed.outcomes == Counter({"Failed": 1}) and failed.exit_code() == 2
    row = last_rows(report)[user["id"]]
    assert row["code"] == "BadRequest" and row["graphMessage"] and row["requestId"]
    skipped = await run_bulk(directory, [user["id"]], report)
    assert skipped.skipped == 1 and skipped.exit_code() == 2  # settled without --retry-failed, still reported
    retried = await run_bulk(directory, [user["id"]], report, retry_failed=True)
    assert retried.outcomes == Counter({"Converted": 1}) and retried.exit_code() == 0


async def test_mail_choices(directory: MsGraphDirectory, emulator: GraphEmulator, tmp_path: Path) -> None:
    """Microsoft's mail; none (the redeem URL kept in the report); the organisation's own through a template."""
    users = conversion_users(3)
    emulator.seed(users)
    template = MailTemplate({"en": "Welcome"}, {"en": '<a href="{redeemUrl}">{displayName}</a>'})
    mailer = OrganisationMail(directory, "portal@contoso.com", template, organisation="Contoso", contact="it@x")
    report = tmp_path / "report.csv"
    await run_bulk(directory, [users[0]["id"]], report, MICROSOFT)
    await run_bulk(directory, [users[1]["id"]], report, NO_MAIL)
    org = ConversionOptions(mail_profile="partners")
    await run_bulk(directory, [users[2]["id"]], report, org, mailer=mailer)
    sent = [p.body["sendInvitationMessage"] for p in posts(emulator)]
    assert sent == [True, False, False]
    last = last_rows(report)
    assert [last[u["id"]]["delivery"] for u in users] == ["microsoft", "none", "organisation"]
    assert last[users[0]["id"]]["redeemUrl"] == "" and last[users[2]["id"]]["redeemUrl"] == ""
    assert last[users[1]["id"]]["redeemUrl"].startswith("https://login.microsoftonline.com/redeem")
    [mail] = emulator.sent_mails
    assert mail["to"] == [users[2]["mail"]] and "redeem" in mail["body"] and "Partner 2" in mail["body"]
    assert report.stat().st_mode & 0o077 == 0  # redeem URLs: readable by the owner only


async def test_dry_run_writes_nothing_even_for_users_in_doubt(
    directory: MsGraphDirectory, emulator: GraphEmulator, tmp_path: Path
) -> None:
    users = conversion_users(14)
    emulator.seed(users)
    report = tmp_path / "report.csv"
    writer = ReportWriter(report)
    writer.write(user=users[0]["id"], outcome="Unknown")
    writer.close()
    emulator.users[users[0]["id"]]["externalUserState"] = "PendingAcceptance"  # the lost answer had acted
    options = ConversionOptions(send_message=False, set_guest_user_type=True)
    dry = tmp_path / "dry.csv"
    bulk = BulkConversion(
        Converter(directory, BASE, priority="low"), options, ReportState(report), ReportWriter(dry), dry_run=True
    )
    summary = await bulk.run(iter([(u["id"], None) for u in users]))
    assert summary.outcomes["WouldConvert"] == 6 and summary.outcomes["Converted"] == 1
    assert [r for r in emulator.requests if r.method != "GET"] == []


def test_report_file_torn_rows_neutralised_cells_and_excel(tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    writer = ReportWriter(report)
    writer.write(user="a@contoso.com", outcome="Converted", reason="=HYPERLINK(1)", graphMessage="+1", mail="@x")
    writer.write(user="b@contoso.com", outcome="Attempting")
    writer.close()
    raw = report.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b",'=HYPERLINK(1)," in raw and b",'+1," in raw
    assert rows(report)[0]["reason"] == "'=HYPERLINK(1)"  # as a spreadsheet shows it
    assert list(rows(report)[0]) == list(FIELDS)
    with report.open("ab") as handle:
        handle.write(b"c@contoso.com,Conver")  # a crash tore this row
    state = ReportState(report)
    assert state.by_reference["a@contoso.com"].outcome == "Converted"
    assert state.by_reference["b@contoso.com"].outcome == "Attempting"
    assert "c@contoso.com" not in state.by_reference and state.torn == 1
    writer = ReportWriter(report)
    writer.write(user="d@contoso.com", outcome="Converted")
    writer.close()
    state = ReportState(report)
    assert state.by_reference["d@contoso.com"].outcome == "Converted" and "c@contoso.com" not in state.by_reference
    # Excel (a ';' locale) saves it back: BOM, CRLF, ';', every cell it likes quoted.
    with report.open(newline="", encoding="utf-8-sig") as handle:
        table = list(csv.reader(handle))
    excel = tmp_path / "excel.csv"
    with excel.open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle, delimiter=";", quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(table)
    again = ReportState(excel)
    assert {k: v.outcome for k, v in again.by_reference.items()} == {
        k: v.outcome for k, v in ReportState(report).by_reference.items()
    }


# -- the admin route -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def host(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    env = host_env(azurite, emulator_server[1], SIGNUP_POLICY=CONVERSION_POLICY)
    async with running_host(env, tmp_path_factory.mktemp("convert")) as (_, url):
        yield url


async def _converted(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    key = {"x-functions-key": FUNCTION_KEY}
    accepted = await http.post("/api/manage/conversions", json=body, headers=key)
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["statusUrl"]
    for _ in range(300):
        view: dict[str, Any] = (await http.get(status_url, headers=key)).json()
        if view["status"] in {"invited", "failed"}:
            return view
        await asyncio.sleep(0.2)
    raise AssertionError(f"not finished: {view}")


@pytest.mark.e2e
async def test_the_admin_route_converts_one_user(host: str, emulator: GraphEmulator) -> None:
    users = conversion_users(14)
    emulator.seed(users)
    eligible, on_premises = users[0], users[13]
    async with httpx.AsyncClient(base_url=host, timeout=10) as http:
        assert (await http.post("/api/manage/conversions", json={"user": eligible["id"]})).status_code == 401
        key = {"x-functions-key": FUNCTION_KEY}
        bad = await http.post("/api/manage/conversions", json={"user": "not a user"}, headers=key)
        assert bad.status_code == 400 and "user" in bad.json()["errors"]
        ok = await _converted(http, {"user": eligible["userPrincipalName"], "setGuestUserType": True})
        refused = await _converted(http, {"user": on_premises["userPrincipalName"]})
    assert ok["status"] == "invited" and ok["invitation"]["invitedUserId"] == eligible["id"]
    assert emulator.users[eligible["id"]]["userType"] == "Guest"
    assert refused["status"] == "failed" and refused["error"]["code"] == "OnPremisesUpn"
    assert [p.body["invitedUser"]["id"] for p in posts(emulator)] == [eligible["id"]]  # nothing for the other
    assert posts(emulator)[0].body["sendInvitationMessage"] is True  # the document's default


@pytest.mark.e2e
async def test_the_worker_finishes_a_conversion_whose_answer_was_lost(host: str, emulator: GraphEmulator) -> None:
    """Lost answer, then a failed userType change: the user is converted once, made a Guest, and mailed by the
    organisation's template (mailProfile) with a fresh redeem URL."""
    users = conversion_users(1, start=14 * 200)
    emulator.seed(users)
    [user] = users
    emulator.faults += [
        Fault("acted504", operation="invitation", times=1),
        Fault("503", operation="user-update", times=1, retry_after=None),
    ]
    body = {"user": user["id"], "setGuestUserType": True, "mailProfile": "converted-partners"}
    async with httpx.AsyncClient(base_url=host, timeout=10) as http:
        view = await _converted(http, body)
    assert view["status"] == "invited", view.get("error")
    assert emulator.users[user["id"]]["userType"] == "Guest"
    conversions = [p for p in posts(emulator) if not p.body.get("resetRedemption")]
    assert len(conversions) == 1 and conversions[0].body["sendInvitationMessage"] is False
    for _ in range(100):
        if emulator.sent_mails:
            break
        await asyncio.sleep(0.1)
    [mail] = emulator.sent_mails
    assert mail["to"] == [user["mail"]] and "login.microsoftonline.com/redeem" in mail["body"]


@pytest.mark.e2e
async def test_the_worker_retries_a_failed_user_type_change(host: str, emulator: GraphEmulator) -> None:
    # Another user than the other route tests': a conversion of a user already converted is linked to that one.
    [user] = emulator.seed(conversion_users(1, start=14 * 100)) and list(emulator.users.values())
    emulator.faults.append(Fault("503", operation="user-update", times=1, retry_after=None))
    async with httpx.AsyncClient(base_url=host, timeout=10) as http:
        view = await _converted(http, {"user": user["id"], "setGuestUserType": True})
    assert view["status"] == "invited" and emulator.users[user["id"]]["userType"] == "Guest"
    assert len([r for r in emulator.requests if r.operation == "user-update"]) == 2
    assert len([p for p in posts(emulator) if not p.body.get("resetRedemption")]) == 1  # converted once


@pytest.mark.e2e
async def test_the_worker_ends_a_refused_user_type_change_at_once(host: str, emulator: GraphEmulator) -> None:
    """A permanent refusal of the userType change (403) ends the request with Graph's code, not retried until the
    deadline; the user stays converted once, and the admin view names the converted user."""
    [user] = emulator.seed(conversion_users(1, start=14 * 300)) and list(emulator.users.values())
    emulator.faults.append(Fault("403", operation="user-update", times=5))
    async with httpx.AsyncClient(base_url=host, timeout=10) as http:
        started = asyncio.get_running_loop().time()
        view = await _converted(http, {"user": user["id"], "setGuestUserType": True})
        elapsed = asyncio.get_running_loop().time() - started
    assert view["status"] == "failed" and view["error"]["code"] == "Authorization_RequestDenied", view
    assert elapsed < 20, f"{elapsed:.1f} s: retried, not ended"  # the host's deadline is minutes away
    assert view["invitation"]["invitedUserId"] == user["id"]
    assert len([r for r in emulator.requests if r.operation == "user-update"]) == 1  # not retried
    assert len([p for p in posts(emulator) if not p.body.get("resetRedemption")]) == 1  # converted once
    assert emulator.users[user["id"]]["userType"] == "Member"
