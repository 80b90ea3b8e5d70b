"""What the logs and spans keep: end-to-end traffic through the local host leaves no raw address, display name,
redeem URL, form token, CAPTCHA token or secret in any record of the host's output: the app's and the host's
loggers at DEBUG, and every span, printed by the console exporter (``TELEMETRY_CONSOLE``)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devhost.processes import free_port, start_devhost
from graph_emulator.server import GraphEmulator
from tests.conftest import FUNCTION_KEY, IDENTITY_HEADER, host_env
from tests.test_abuse import _stand_in

pytestmark = pytest.mark.e2e

REVIEW_POLICY = str(Path(__file__).resolve().parent / "policies" / "review.json")
KEY = {"x-functions-key": FUNCTION_KEY}
FORM_SECRET = "form-secret-5b1f0c9e7d"
CAPTCHA_SECRET = "shh"  # what the stand-in accepts
CAPTCHA_TOKEN = "good-token"
ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@pytest.fixture
async def traffic_host(
    azurite: str, emulator: GraphEmulator, emulator_server: tuple[GraphEmulator, str], tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    """A host with every secret set (form tokens, CAPTCHA, function key), logging at DEBUG."""
    captcha_port = free_port()
    runner = await _stand_in(captcha_port, {})
    env = host_env(
        azurite,
        emulator_server[1],
        SIGNUP_POLICY=REVIEW_POLICY,
        ORGANISATION_NAME="Contoso",
        LOG_LEVEL="DEBUG",
        TELEMETRY_CONSOLE="1",
        FORM_TOKEN_SECRET=FORM_SECRET,
        SIGNUP_MIN_FILL_SECONDS="1",
        CAPTCHA_PROVIDER="hcaptcha",
        CAPTCHA_SITE_KEY="site",
        CAPTCHA_SECRET=CAPTCHA_SECRET,
        CAPTCHA_VERIFY_URL=f"http://127.0.0.1:{captcha_port}/siteverify",
    )
    port = free_port()
    service = start_devhost(port, env, tmp_path, settings_file=tmp_path / "none.json")
    try:
        yield {"url": f"http://127.0.0.1:{port}", "log": service.log_path}
    finally:
        service.stop()
        await runner.cleanup()


async def _until(http: httpx.AsyncClient, sid: str, statuses: set[str], within: float = 40) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        body = dict((await http.get(f"/api/manage/signups/{sid}", headers=KEY)).json())
        if body["status"] in statuses and not any(g["state"] == "due" for g in body.get("groups", [])):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.3)


async def test_end_to_end_traffic_leaves_no_address_name_redeem_url_token_or_secret_in_logs_or_spans(
    traffic_host: dict[str, Any], emulator: GraphEmulator
) -> None:
    emulator.add_user(mail="lee.member@fabrikam.com", userPrincipalName="lee.member@fabrikam.com", displayName="Lee")
    emulator.add_user(mail="mia@contoso.com", userPrincipalName="mia@contoso.com", displayName="Mia")
    addresses = {
        "ana.guest@fabrikam.com",  # invited at once, with the organisation's own mail (redeem URL)
        "sam.partner@northwind.com",  # waits for review: the approvers' mail, then approved
        "eve.partner@northwind.com",  # denied, then refused when she asks again
        "lee.member@fabrikam.com",  # already a member
        "bob@blocked.example.com",  # refused by the policy
        "zed@fabrikam.com",  # a browser's form post
        "mia@contoso.com",  # an internal user converted by an admin
    }
    tokens: list[str] = []
    async with httpx.AsyncClient(base_url=traffic_host["url"], timeout=15) as http:

        async def token() -> str:
            page = (await http.get("/api/signup")).text
            tokens.append(page.split('name="formToken" value="', 1)[1].split('"', 1)[0])
            return tokens[-1]

        async def sign_up(email: str, name: str = "Pat Guest") -> httpx.Response:
            form_token = await token()
            await asyncio.sleep(1.1)  # the minimum fill time
            body = {"email": email, "displayName": name, "formToken": form_token, "h-captcha-response": CAPTCHA_TOKEN}
            return await http.post("/api/signups", json=body)

        ana = await sign_up("Ana.Guest@Fabrikam.com", "Ana Quillfeather")
        sam = await sign_up("sam.partner@northwind.com")
        eve = await sign_up("eve.partner@northwind.com")
        lee = await sign_up("lee.member@fabrikam.com")
        assert [r.status_code for r in (ana, sam, eve, lee)] == [202] * 4
        assert (await sign_up("bob@blocked.example.com")).status_code == 403
        bad_captcha = await http.post(
            "/api/signups", json={"email": "zed@fabrikam.com", "displayName": "Z", "h-captcha-response": "nope"}
        )
        assert bad_captcha.status_code == 400
        form_token = await token()
        form = await http.post(
            "/api/signups",
            data={"email": "zed@fabrikam", "displayName": "Zed", "formToken": form_token},
            headers={"Accept": "text/html"},
        )
        assert form.status_code == 400 and "text/html" in form.headers["Content-Type"]
        sid_ana, sid_sam, sid_eve, sid_lee = (r.json()["id"] for r in (ana, sam, eve, lee))
        approved = await http.post(f"/api/manage/signups/{sid_sam}/approve", json={"reason": "ok"}, headers=KEY)
        denied = await http.post(f"/api/manage/signups/{sid_eve}/deny", json={"reason": "no"}, headers=KEY)
        assert approved.status_code == denied.status_code == 200
        assert (await sign_up("EVE.partner@northwind.com")).status_code == 202  # remembered: answered as any review
        forged = await http.post(
            f"/api/manage/signups/{sid_eve}/approve",
            content=b"",
            headers={**KEY, "Content-Type": "text/plain", "Origin": "https://attacker.example"},
        )
        assert forged.status_code == 403
        conversion = await http.post("/api/manage/conversions", json={"user": "mia@contoso.com"}, headers=KEY)
        assert conversion.status_code == 202, conversion.text
        finished = [await _until(http, sid, {"invited"}) for sid in (sid_ana, sid_sam)]
        await _until(http, sid_lee, {"failed", "invited"})
        finished.append(await _until(http, conversion.json()["id"], {"invited", "failed"}))
        for _ in range(100):
            if len(emulator.sent_mails) >= 3:  # the approvers' mail and two organisation mails
                break
            await asyncio.sleep(0.2)
        await http.get(f"/api/signups/{sid_ana}")
        await http.get(f"/api/signup/{sid_ana}?lang=de")

    redeem_urls = {str(d["invitation"]["redeemUrl"]) for d in finished if (d.get("invitation") or {}).get("redeemUrl")}
    assert len(redeem_urls) >= 2
    assert any(u in m["body"] for m in emulator.sent_mails for u in redeem_urls)  # the traffic did carry them

    await asyncio.sleep(0.5)  # the host's last lines
    log = await asyncio.to_thread(Path(traffic_host["log"]).read_text, encoding="utf-8", errors="replace")
    assert "signup_id=" in log and len(log.splitlines()) > 50  # the capture did capture the app's records
    assert '"trace_id"' in log and '"signup.id"' in log, "no span was printed: the capture missed the spans"
    for name in ("Ana Quillfeather", "Pat Guest", "Lee", "Mia"):
        assert not re.search(rf"\b{name}\b", log), f"a display name in the log or a span: {name}"
    lowered = log.lower()
    found = {a for a in addresses if a.lower() in lowered}
    assert found == set(), f"addresses in the log: {found}"
    assert ADDRESS.findall(log) == [], "an address-like string in the log"
    assert [u for u in redeem_urls if u in log or u.split("?", 1)[0] + "?rd=" in log] == []
    assert "invitations.microsoft.com/redeem" not in log
    for token in tokens:
        assert token.split(".", 1)[1] not in log  # the MAC: the part that makes it a token
    assert not re.search(r"Bearer\s+[A-Za-z0-9._~+/-]{8,}", log), "a bearer token in the log"
    for secret in (FORM_SECRET, FUNCTION_KEY, IDENTITY_HEADER, f"secret={CAPTCHA_SECRET}", CAPTCHA_TOKEN):
        assert secret not in log, secret
