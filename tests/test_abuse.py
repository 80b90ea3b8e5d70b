"""Abuse controls: the form token, the client IP behind proxies, rate limits in Azurite, the CAPTCHA against a
local stand-in of the provider's verify endpoint, and all of them through the local host with CORS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from devhost.processes import free_port
from graph_emulator.server import GraphEmulator
from shared.abuse import FormTokens, TableRateLimiter, client_ip
from shared.abuse.captcha import CaptchaUnavailable, CaptchaVerifier
from shared.settings import Settings
from shared.storage import build_table_client
from tests.conftest import host_env, problem_of, running_host


def test_form_tokens() -> None:
    now = [1_000_000.0]
    tokens = FormTokens("secret", 3, clock=lambda: now[0])
    token = tokens.issue()
    assert tokens.check(token) == "too_fast"
    now[0] += 3
    assert tokens.check(token) is None
    assert FormTokens("other", 3, clock=lambda: now[0]).check(token) == "invalid"
    assert tokens.check("123.forged") == "invalid" and tokens.check("") == "invalid"
    now[0] += 25 * 3600
    assert tokens.check(token) == "expired"


def test_client_ip_trusts_only_the_configured_hops() -> None:
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7:51234"}
    assert client_ip(headers, 1) == "203.0.113.7"
    assert client_ip(headers, 2) == "6.6.6.6"
    assert client_ip(headers, 3) is None and client_ip({}, 1) is None
    assert client_ip({"x-forwarded-for": "[2001:db8::1]:443"}, 1) == "2001:db8::1"
    assert client_ip({"X-Forwarded-For": "not-an-ip"}, 1) is None


async def test_rate_limits_count_exactly_in_table_storage(settings: Settings) -> None:
    table = build_table_client(settings)
    try:
        limiter = TableRateLimiter(table, window=600)
        results = await asyncio.gather(*(limiter.hit({"ip": ("198.51.100.1", 5)}) for _ in range(8)))
        assert sum(1 for r in results if r.allowed) == 5  # concurrent hits never lose a count
        refused = next(r for r in results if not r.allowed)
        assert refused.kind == "ip" and 0 < refused.retry_after <= 600
        assert (await limiter.hit({"ip": ("198.51.100.2", 5)})).allowed  # another address, its own count
    finally:
        await table.close()


async def _stand_in(port: int, state: dict[str, Any]) -> web.AppRunner:
    """A stand-in for a CAPTCHA provider's siteverify endpoint on the test loop (the secret is "shh")."""

    async def verify(request: web.Request) -> web.Response:
        form = await request.post()
        state.setdefault("calls", []).append(dict(form))
        if state.get("status", 200) != 200:
            return web.Response(status=state["status"])
        return web.json_response({"success": form.get("response") == "good-token" and form.get("secret") == "shh"})

    app = web.Application()
    app.router.add_post("/siteverify", verify)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture
async def provider() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    state: dict[str, Any] = {"url": f"http://127.0.0.1:{port}/siteverify"}
    runner = await _stand_in(port, state)
    yield state
    await runner.cleanup()


async def test_captcha_verification_fails_closed(provider: dict[str, Any]) -> None:
    verifier = CaptchaVerifier("turnstile", "shh", provider["url"])
    assert await verifier.verify("good-token", "203.0.113.7") is True
    assert provider["calls"][-1]["remoteip"] == "203.0.113.7"
    assert await verifier.verify("bad-token", None) is False
    assert await verifier.verify(None, None) is False
    provider["status"] = 502
    with pytest.raises(CaptchaUnavailable):
        await verifier.verify("good-token", None)
    with pytest.raises(CaptchaUnavailable):
        await CaptchaVerifier("turnstile", "shh", f"http://127.0.0.1:{free_port()}/siteverify").verify("t", None)


@pytest.fixture(scope="module")
async def guarded_host(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    """A host with tight limits, terms, a form-token secret, CORS for one origin and a CAPTCHA stand-in."""
    logs = tmp_path_factory.mktemp("abuse")
    captcha_port = free_port()
    env = host_env(
        azurite,
        emulator_server[1],
        RATE_LIMIT_PER_IP="2",
        RATE_LIMIT_PER_DOMAIN="50",
        TERMS_URL="https://contoso.example/terms",
        TERMS_VERSION="7",
        FORM_TOKEN_SECRET="abuse-tests",
        SIGNUP_MIN_FILL_SECONDS="2",
        CORS_ALLOWED_ORIGINS="https://partner.example",
        CAPTCHA_PROVIDER="hcaptcha",
        CAPTCHA_SITE_KEY="site",
        CAPTCHA_SECRET="shh",
        CAPTCHA_VERIFY_URL=f"http://127.0.0.1:{captcha_port}/siteverify",
    )
    async with running_host(env, logs) as (_, url):
        yield {"url": url, "captcha_port": captcha_port}


@pytest.fixture
async def captcha_stand_in(guarded_host: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    state: dict[str, Any] = {}
    runner = await _stand_in(guarded_host["captcha_port"], state)
    yield state
    await runner.cleanup()


def _body(email: str, **extra: Any) -> dict[str, Any]:
    return {"email": email, "displayName": "Ann", "acceptTerms": True, "h-captcha-response": "good-token", **extra}


@pytest.mark.e2e
async def test_the_guarded_endpoint(
    guarded_host: dict[str, Any], captcha_stand_in: dict[str, Any], emulator: GraphEmulator
) -> None:
    url = guarded_host["url"]
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        # CORS: the allowed origin's preflight and post carry the headers; another origin gets none.
        allowed = await http.options("/api/signups", headers={"Origin": "https://partner.example"})
        assert (
            allowed.status_code == 204 and allowed.headers["Access-Control-Allow-Origin"] == "https://partner.example"
        )
        assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
        other = await http.options("/api/signups", headers={"Origin": "https://evil.example"})
        assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers
        # Terms, CAPTCHA and the page's signals.
        no_terms = await http.post("/api/signups", json=_body("a1@fabrikam.com", acceptTerms=False))
        assert no_terms.status_code == 400 and "acceptTerms" in problem_of(no_terms.json())["errors"]
        bad_captcha = await http.post("/api/signups", json=_body("a2@fabrikam.com", **{"h-captcha-response": "x"}))
        assert bad_captcha.status_code == 400 and problem_of(bad_captcha.json())["type"] == "/problems/captcha"
        honeypot = await http.post("/api/signups", json=_body("a3@fabrikam.com", website="http://spam.example"))
        assert honeypot.status_code == 400 and problem_of(honeypot.json())["type"] == "/problems/form-rejected"
        page = await http.get("/api/signup")
        token = page.text.split('name="formToken" value="', 1)[1].split('"', 1)[0]
        too_fast = await http.post("/api/signups", json=_body("a4@fabrikam.com", formToken=token))
        assert too_fast.status_code == 400 and problem_of(too_fast.json()).get("reason") == "too_fast"
        # A well-behaved post after the minimum fill time passes (from an allowed partner origin).
        await asyncio.sleep(2)
        ok = await http.post(
            "/api/signups",
            json=_body("ann@fabrikam.com", formToken=token),
            headers={"Origin": "https://partner.example"},
        )
        assert ok.status_code == 202, ok.text
        assert ok.headers["Access-Control-Allow-Origin"] == "https://partner.example"
        # The rate limit (2 per window per address) counted the refused CAPTCHA and the success: the next is
        # refused, and a forged X-Forwarded-For does not help (the host appends the address it saw).
        limited = await http.post(
            "/api/signups", json=_body("bob@fabrikam.com"), headers={"X-Forwarded-For": "192.0.2.99"}
        )
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
        assert problem_of(limited.json())["type"] == "/problems/too-many-requests"


async def test_the_gate_fails_closed_when_the_provider_is_unreachable(settings: Settings) -> None:
    """An unreachable CAPTCHA provider refuses the submission (the trigger answers 503); nothing goes on."""
    from dataclasses import replace

    from shared.abuse import SubmissionGate, VerificationUnavailable
    from shared.abuse.ratelimit import MemoryRateLimiter
    from shared.lifecycle.validation import parse_submission

    unreachable = CaptchaVerifier("recaptcha", "shh", f"http://127.0.0.1:{free_port()}/siteverify")
    gate = SubmissionGate(replace(settings, captcha_provider="recaptcha"), MemoryRateLimiter(), None, unreachable)
    form, extras = parse_submission(
        "application/json", b'{"email": "x@fabrikam.com", "displayName": "X", "g-recaptcha-response": "t"}'
    )
    with pytest.raises(VerificationUnavailable):
        await gate.check(form, extras, {"X-Forwarded-For": "203.0.113.9:1"})


async def test_a_limit_of_zero_is_no_limit(settings: Settings) -> None:
    from dataclasses import replace

    from shared.abuse import SubmissionGate
    from shared.abuse.ratelimit import MemoryRateLimiter
    from shared.lifecycle.validation import parse_submission

    limiter = MemoryRateLimiter()
    form, extras = parse_submission("application/json", b'{"email": "x@fabrikam.com", "displayName": "X"}')
    off = SubmissionGate(replace(settings, rate_limit_per_ip=0, rate_limit_per_domain=0), limiter, None, None)
    for _ in range(3):
        await off.check(form, extras, {"X-Forwarded-For": "203.0.113.9:1"})
    assert limiter.counts == {}
    on = SubmissionGate(replace(settings, rate_limit_per_ip=0, rate_limit_per_domain=2), limiter, None, None)
    await on.check(form, extras, {})
    await on.check(form, extras, {})
    with pytest.raises(Exception, match="Too many"):
        await on.check(form, extras, {})
    assert limiter.counts == {("domain", "fabrikam.com"): 3}
