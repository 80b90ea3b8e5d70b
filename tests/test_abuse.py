"""Abuse controls: the form token, the client IP behind proxies, rate limits in Azurite, the CAPTCHA against a
local stand-in of the provider's verify endpoint, and all of them through the local host with CORS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from devhost.processes import Service, free_port
from graph_emulator.server import GraphEmulator
from shared.abuse import (
    FormTokens,
    MemoryCountStore,
    SharedLimiter,
    SubmissionGate,
    VerificationUnavailable,
    client_ip,
    rate_key,
)
from shared.abuse.captcha import CaptchaUnavailable, CaptchaVerifier
from shared.errors import FormRejected, TooManyRequests, ValidationFailed
from shared.lifecycle.models import is_signup_id
from shared.lifecycle.validation import parse_submission
from shared.settings import Settings
from tests.conftest import host_env, problem_of, running_host, start_host, unique_names


def test_form_tokens() -> None:
    now = [1_000_000.0]
    tokens = FormTokens("secret", 3, clock=lambda: now[0])
    token = tokens.issue()
    assert tokens.check(token) == "too_fast"
    now[0] += 3
    assert tokens.check(token) is None
    assert FormTokens("other", 3, clock=lambda: now[0]).check(token) == "invalid"
    assert tokens.check("123.forged") == "invalid" and tokens.check("") == "invalid"
    issued, nonce, mac = token.split(".")
    assert tokens.check(f"{int(issued) - 60}.{nonce}.{mac}") == "invalid"  # the time is signed with the nonce
    assert tokens.check(f"{issued}.{'A' * 22}.{mac}") == "invalid"  # and the nonce with the time
    now[0] += 25 * 3600
    assert tokens.check(token) == "expired"


def test_a_token_names_one_unguessable_signup_id() -> None:
    """The id is the token's own: the same for every post of it, another for every other page, a sign-up id's
    shape, and depends on the secret (so nobody without it can name a record in advance)."""
    tokens = FormTokens("secret", 0)
    first, second = tokens.issue(), tokens.issue()
    assert tokens.signup_id(first) == tokens.signup_id(first)
    assert tokens.signup_id(first) != tokens.signup_id(second)
    assert is_signup_id(tokens.signup_id(first))
    assert FormTokens("other", 0).signup_id(first) != tokens.signup_id(first)
    assert first.split(".")[1] not in tokens.signup_id(first)
    # It begins with the minute the page was served, as every sign-up id begins with a minute.
    minute = datetime.fromtimestamp(int(first.split(".")[0]), UTC).strftime("%Y%m%d%H%M")
    assert tokens.signup_id(first).startswith(minute)


def test_client_ip_trusts_only_the_configured_hops() -> None:
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7:51234"}
    assert client_ip(headers, 1) == "203.0.113.7"
    assert client_ip(headers, 2) == "6.6.6.6"
    assert client_ip({"x-forwarded-for": "[2001:db8::1]:443"}, 1) == "2001:db8::1"
    assert client_ip({"X-Forwarded-For": "not-an-ip"}, 1) is None


def test_client_ip_falls_back_to_the_peer() -> None:
    """A missing X-Forwarded-For (or fewer entries than trusted proxies) is not a way around the limit."""
    assert client_ip({}, 1, peer="198.51.100.4:5000") == "198.51.100.4"
    assert client_ip({}, 0, peer="[2001:db8::9]:5000") == "2001:db8::9"
    # Fewer entries than trusted hops: every entry was appended by a trusted proxy; the outermost one wins.
    assert client_ip({"X-Forwarded-For": "203.0.113.7:1"}, 3) == "203.0.113.7"
    assert client_ip({"X-Forwarded-For": "203.0.113.7:1"}, 3, peer="10.0.0.1") == "10.0.0.1"
    assert client_ip({}, 1) is None
    assert client_ip({"X-Forwarded-For": "6.6.6.6"}, 0) is None  # no proxy trusted: the header is the client's


def test_the_ip_limit_counts_ipv6_per_64() -> None:
    assert rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:ffff:1:2:3") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("::ffff:203.0.113.7") == rate_key("203.0.113.7") == "203.0.113.7"
    assert rate_key("203.0.113.8") != rate_key("203.0.113.7")
    assert rate_key(None) == rate_key("garbage") == "unknown"  # counted together, not let through


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
        # A page post (form-encoded) without a token is refused, from anywhere but a partner origin.
        page_post = {"email": "cy@fabrikam.com", "displayName": "Cy", "acceptTerms": "true"}
        untokened = await http.post("/api/signups", data={**page_post, "h-captcha-response": "good-token"})
        assert untokened.status_code == 400 and problem_of(untokened.json())["type"] == "/problems/form-rejected"
        # The rate limit (2 per window per address) counted none of the refusals above, only the success: one
        # more passes, the next is refused, and a forged X-Forwarded-For does not help (the host appends the
        # address it saw).
        second = await http.post("/api/signups", json=_body("dee@fabrikam.com"))
        assert second.status_code == 202, second.text
        limited = await http.post(
            "/api/signups", json=_body("bob@fabrikam.com"), headers={"X-Forwarded-For": "192.0.2.99"}
        )
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
        assert problem_of(limited.json())["type"] == "/problems/too-many-requests"


async def _one_ip_host(azurite: str, graph: str, logs: Path, secret: str, **extra: str) -> tuple[Service, str]:
    """A host with form tokens and ``extra`` settings; the rate limits not given there at their defaults. Started
    off the event loop (which goes on serving the emulator)."""
    env = host_env(azurite, graph, FORM_TOKEN_SECRET=secret, **extra)
    for name in ("RATE_LIMIT_PER_IP", "RATE_LIMIT_PER_DOMAIN"):
        if name not in extra:
            del env[name]  # host_env turns the limits off for other tests; here the defaults apply
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
    return await start_host(env, logs)


async def _stop(*services: Service) -> None:
    await asyncio.gather(*(asyncio.to_thread(service.stop) for service in services))


async def _burst(url: str, secret: str, count: int) -> list[int]:
    """``count`` concurrent sign-ups from one address and one domain, each with its page's own token."""
    tokens = FormTokens(secret, 0, clock=lambda: time.time() - 10)  # pages served ten seconds ago
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    "/api/signups",
                    json={"email": f"p{i}@fabrikam.com", "displayName": f"P {i}", "formToken": tokens.issue()},
                )
                for i in range(count)
            )
        )
    return [a.status_code for a in answers]


@pytest.mark.e2e
async def test_an_onboarding_burst_from_one_address(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path: Path, settings: Settings
) -> None:
    """64 concurrent sign-ups from one IP and one domain: all accepted under the default limits; with the
    per-IP limit lowered to 20, exactly the 44 over it are refused (429), none for contention. And a reused
    form token is refused."""
    # Both hosts start together.
    (default, url), (lowered, lowered_url) = await asyncio.gather(
        # The fill time is not the subject here (test_the_guarded_endpoint's): no wait before the page's post.
        _one_ip_host(azurite, emulator_server[1], tmp_path / "default", "burst", SIGNUP_MIN_FILL_SECONDS="0"),
        # A day-long window: a window's end cannot fall inside the burst and reset the count.
        _one_ip_host(
            azurite,
            emulator_server[1],
            tmp_path / "lowered",
            "burst",
            RATE_LIMIT_PER_IP="20",
            RATE_LIMIT_WINDOW_SECONDS="86400",
        ),
    )
    try:
        assert settings.rate_limit_per_ip >= 64  # the defaults (app_env sets no limit)
        assert await _burst(url, "burst", 64) == [202] * 64
        # A token is single-use: its second post names the same record, whose insert is refused.
        token = FormTokens("burst", 0, clock=lambda: time.time() - 10).issue()
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            bodies = [{"email": f"r{i}@fabrikam.com", "displayName": "R", "formToken": token} for i in (1, 2)]
            first, again = [await http.post("/api/signups", json=body) for body in bodies]
        assert first.status_code == 202 and first.json()["id"] == FormTokens("burst", 0).signup_id(token)
        assert again.status_code == 400 and problem_of(again.json())["type"] == "/problems/form-rejected"
        # The same through the page without JavaScript: its token's id is the record's; a second post of that
        # page gets the form again (400), with a fresh token.
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            page = await http.get("/api/signup?lang=en")
            served = page.text.split('name="formToken" value="', 1)[1].split('"', 1)[0]
            form = {"email": "nojs@fabrikam.com", "displayName": "N", "formToken": served}
            html = {"Accept": "text/html"}
            posted = await http.post("/api/signups", data=form, headers=html)
            reposted = await http.post("/api/signups", data=form, headers=html)
        assert posted.status_code == 303
        assert posted.headers["Location"].startswith(f"/api/signup/{FormTokens('burst', 0).signup_id(served)}?")
        assert reposted.status_code == 400 and 'name="formToken"' in reposted.text and served not in reposted.text
        statuses = await _burst(lowered_url, "burst", 64)
        assert sorted(statuses) == [202] * 20 + [429] * 44
    finally:
        await _stop(default, lowered)


def _gate(settings: Settings, limiter: SharedLimiter | None = None, **changes: Any) -> SubmissionGate:
    tokens = FormTokens("gate-tests", 0)
    return SubmissionGate(replace(settings, **changes), limiter, tokens, None)


async def test_the_gate_fails_closed_when_the_provider_is_unreachable(settings: Settings) -> None:
    """An unreachable CAPTCHA provider refuses the submission (the trigger answers 503); nothing goes on."""
    unreachable = CaptchaVerifier("recaptcha", "shh", f"http://127.0.0.1:{free_port()}/siteverify")
    gate = SubmissionGate(replace(settings, captcha_provider="recaptcha"), None, None, unreachable)
    form, extras = parse_submission(
        "application/json", b'{"email": "x@fabrikam.com", "displayName": "X", "g-recaptcha-response": "t"}'
    )
    with pytest.raises(VerificationUnavailable):
        await gate.check(form, extras, {"X-Forwarded-For": "203.0.113.9:1"})


async def test_a_limit_of_zero_is_no_limit(settings: Settings) -> None:
    limiter = SharedLimiter(MemoryCountStore(), "ip", 600, 1)
    form, extras = parse_submission("application/json", b'{"email": "x@fabrikam.com", "displayName": "X"}')
    off = _gate(settings, limiter, rate_limit_per_ip=0)
    for _ in range(3):
        await off.check(form, extras, {"X-Forwarded-For": "203.0.113.9:1"})
    assert limiter.known("203.0.113.9") == 0
    on = _gate(settings, limiter, rate_limit_per_ip=2)
    await on.check(form, extras, {"X-Forwarded-For": "203.0.113.9:1"})
    await on.check(form, extras, {"X-Forwarded-For": "203.0.113.9:2"})
    with pytest.raises(TooManyRequests):
        await on.check(form, extras, {"X-Forwarded-For": "203.0.113.9:3"})


async def test_only_what_passed_the_cheap_checks_is_counted(settings: Settings) -> None:
    """Honeypot, a bad or missing token, missing terms: refused without touching the IP's allowance."""
    limiter = SharedLimiter(MemoryCountStore(), "ip", 600, 1)
    gate = _gate(settings, limiter, rate_limit_per_ip=1, terms_version="3")
    headers = {"X-Forwarded-For": "203.0.113.20:1"}
    form_post = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    junk = [
        (b"email=a%40fabrikam.com&displayName=A&acceptTerms=true&website=x", form_post, "honeypot"),
        (b"email=a%40fabrikam.com&displayName=A&acceptTerms=true&formToken=1.forged", form_post, "invalid"),
        (b"email=a%40fabrikam.com&displayName=A&acceptTerms=true", form_post, "missing"),
    ]
    for body, sent, reason in junk:
        form, extras = parse_submission(sent["Content-Type"], body)
        with pytest.raises(FormRejected) as refused:
            await gate.check(form, extras, sent)
        assert refused.value.reason == reason
    form, extras = parse_submission("application/json", b'{"email": "a@fabrikam.com", "displayName": "A"}')
    with pytest.raises(ValidationFailed):
        await gate.check(form, extras, headers)
    assert limiter.known("203.0.113.20") == 0
    form, extras = parse_submission(
        "application/json", b'{"email": "a@fabrikam.com", "displayName": "A", "acceptTerms": true}'
    )
    passed = await gate.check(form, extras, headers)
    assert passed.form.terms_version == "3" and limiter.known("203.0.113.20") == 1


async def test_a_page_post_needs_a_token_and_names_its_signup_id(settings: Settings) -> None:
    """With tokens configured: a form post without one is refused unless it comes from a partner origin on
    the CORS allowlist; JSON API clients need none and get a random id; a token's post gets the token's id."""
    gate = _gate(settings, cors_allowed_origins=("https://partner.example",))
    tokens = FormTokens("gate-tests", 0)
    body = b"email=a%40fabrikam.com&displayName=A"
    form, extras = parse_submission("application/x-www-form-urlencoded", body)
    page = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    with pytest.raises(FormRejected, match="could not be accepted"):
        await gate.check(form, extras, page)
    with pytest.raises(FormRejected):
        await gate.check(form, extras, {**page, "Origin": "https://evil.example"})
    partner = await gate.check(form, extras, {**page, "Origin": "https://partner.example/"})
    assert not partner.from_token and is_signup_id(partner.signup_id) and partner.issued_at is None
    token = tokens.issue()
    form, extras = parse_submission("application/x-www-form-urlencoded", body + b"&formToken=" + token.encode())
    first, again = await gate.check(form, extras, page), await gate.check(form, extras, page)
    assert first.from_token and first.signup_id == again.signup_id == tokens.signup_id(token)
    assert first.issued_at == again.issued_at == int(token.split(".")[0])
    form, extras = parse_submission("application/json", b'{"email": "a@fabrikam.com", "displayName": "A"}')
    api = [await gate.check(form, extras, {"Content-Type": "application/json"}) for _ in range(2)]
    assert api[0].signup_id != api[1].signup_id and not api[0].from_token and is_signup_id(api[0].signup_id)


async def test_ipv6_clients_share_their_64(settings: Settings) -> None:
    limiter = SharedLimiter(MemoryCountStore(), "ip", 600, 1)
    gate = _gate(settings, limiter, rate_limit_per_ip=2)
    form, extras = parse_submission("application/json", b'{"email": "a@fabrikam.com", "displayName": "A"}')
    await gate.check(form, extras, {"X-Forwarded-For": "[2001:db8:0:1::1]:1"})
    await gate.check(form, extras, {"X-Forwarded-For": "[2001:db8:0:1:ffff::2]:1"})
    with pytest.raises(TooManyRequests):
        await gate.check(form, extras, {"X-Forwarded-For": "[2001:db8:0:1:abcd::3]:1"})
    await gate.check(form, extras, {"X-Forwarded-For": "[2001:db8:0:2::1]:1"})  # the next /64
    # No X-Forwarded-For at all: the peer is counted (here, the /64 already full).
    with pytest.raises(TooManyRequests):
        await gate.check(form, extras, {}, peer="[2001:db8:0:1::9]:5")


@pytest.mark.e2e
async def test_two_hosts_share_the_count_through_table_storage(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path: Path
) -> None:
    """Two hosts (two instances) on one table, per-IP limit 20: 15 sign-ups through the first; once the
    instances have reconciled (two rounds of RATE_LIMIT_SYNC_SECONDS), the second admits exactly the 5 left."""
    shared_names = unique_names()
    hosts = await asyncio.gather(
        *(
            _one_ip_host(
                azurite,
                emulator_server[1],
                tmp_path / name,
                "two",
                RATE_LIMIT_PER_IP="20",
                RATE_LIMIT_WINDOW_SECONDS="86400",
                **shared_names,
            )
            for name in ("a", "b")
        )
    )
    try:
        assert await _burst(hosts[0][1], "two", 15) == [202] * 15
        await asyncio.sleep(3)  # the first publishes within a second, the second reads within the next
        assert sorted(await _burst(hosts[1][1], "two", 15)) == [202] * 5 + [429] * 10
    finally:
        await _stop(*(service for service, _ in hosts))
