"""The pages in a real browser: Debian's chromium driven by Playwright, against the local host, Azurite and
the Graph emulator. Every language, field errors, the status view, the no-JavaScript path, keyboard-only use,
the approver's page, and axe-core's accessibility check. Screenshots go to ``screenshots/`` (git-ignored)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Response,
    async_playwright,
    expect,
)

from graph_emulator.server import GraphEmulator
from tests.conftest import FUNCTION_KEY, eventually, host_env, running_host

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "screenshots"
POLICY = str(Path(__file__).resolve().parent / "policies" / "pages.json")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The policy every page must be served with (shared/pages/render.py; no logo, no CAPTCHA on this site).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "frame-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The heading of the form in each language (from the catalogues), and an invitation's final words.
HEADINGS = {
    "en": "Sign up as a guest of Contoso",
    "ja": "Contoso のゲストとして登録",
    "zh-Hans": "注册成为 Contoso 的来宾",
    "de": "Als Gast bei Contoso registrieren",
    "nl": "Aanmelden als gast van Contoso",
}
INVITED = {
    "en": "Invitation sent.",
    "ja": "招待を送信しました。",
    "zh-Hans": "邀请已发送。",
    "de": "Einladung gesendet.",
    "nl": "Uitnodiging verzonden.",
}


@pytest.fixture(scope="module")
async def site(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    logs = tmp_path_factory.mktemp("pages")
    env = host_env(
        azurite,
        emulator_server[1],
        SIGNUP_POLICY=POLICY,
        ORGANISATION_NAME="Contoso",
        ORGANISATION_CONTACT="partners@contoso.com",
        TERMS_URL="https://contoso.example/terms",
        TERMS_VERSION="2026-01",
        FORM_TOKEN_SECRET="browser-tests",
        # The form token is still checked; the minimum fill time is test_abuse.py's subject, not these tests'.
        SIGNUP_MIN_FILL_SECONDS="0",
    )
    async with running_host(env, logs) as (_, url):
        yield url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        await launched.close()


@dataclass
class Watch:
    """What a browser context saw: pages served (each checked for the CSP header) and what went wrong."""

    pages: int = 0
    problems: list[str] = field(default_factory=list)

    def response(self, response: Response) -> None:
        if response.request.resource_type != "document" or not urlsplit(response.url).path.startswith("/api/"):
            return
        if 300 <= response.status < 400:
            return  # a redirect (the form's 303 to the status page) has no content to protect
        self.pages += 1
        policy = response.headers.get("content-security-policy")
        if policy != CSP:
            self.problems.append(f"{response.url} served with Content-Security-Policy {policy!r}")

    def console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.problems.append(message.text)


def watch(context: BrowserContext) -> Watch:
    """Check every page the context loads for the CSP header, and collect CSP violations and script errors."""
    seen = Watch()
    context.on("response", seen.response)
    context.on("console", seen.console)
    context.on("weberror", lambda e: seen.problems.append(f"script error: {e.error}"))
    return seen


NewContext = Callable[..., Awaitable[BrowserContext]]


@pytest.fixture
async def contexts(browser: Browser, site: str, emulator: GraphEmulator) -> AsyncIterator[NewContext]:
    """Makes browser contexts on the site, each watched; afterwards each must have loaded a page, every page
    with the Content-Security-Policy, and nothing may have broken it."""
    made: list[tuple[BrowserContext, Watch]] = []

    async def new(**options: Any) -> BrowserContext:
        context = await browser.new_context(base_url=site, **options)
        made.append((context, watch(context)))
        return context

    yield new
    for context, _ in made:
        await context.close()
    for _, seen in made:
        assert seen.pages > 0 and seen.problems == [], seen


@pytest.fixture
async def page(contexts: NewContext) -> Page:
    """A fresh page in a watched context."""
    return await (await contexts()).new_page()


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is (WCAG 2.x A and AA rules)."""
    # Evaluated through the DevTools protocol: the page's own CSP (rightly) refuses injected inline scripts.
    # Once per document: a tab switch keeps the document, and with it axe (parsing it again costs about a second).
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    tags = "['wcag2a', 'wcag2aa', 'wcag21aa', 'wcag22aa']"
    result = await page.evaluate(f"async () => await axe.run(document, {{runOnly: {{type: 'tag', values: {tags}}}}})")
    return [v for v in result["violations"] if v["impact"] in {"serious", "critical"}]


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def pending_card(manage: Page, address: str) -> Locator:
    """The request's card on the approver's page, reloading while it is still received (not yet under review)."""
    card = manage.locator(".request", has_text=address)
    for _ in range(30):
        if await card.count():
            break
        await asyncio.sleep(0.5)
        await manage.reload()
    await expect(card).to_be_visible(timeout=15_000)
    return card


async def fill_form(page: Page, email: str, *, answers: bool = True) -> None:
    await page.fill("#email", email)
    await page.fill("#displayName", "Sam Guest")
    await page.fill("#company", "Fabrikam")
    await page.fill("#justification", "Project Falcon")
    if answers and await page.locator("#answer-project").is_visible():
        await page.fill("#answer-project", "Falcon")
    await page.check("#acceptTerms")


@pytest.mark.parametrize("language", list(HEADINGS))
async def test_each_language_signs_up_and_sees_the_invitation(page: Page, language: str) -> None:
    """The form in each language: it validates, sends without a reload, and the status view says what happens."""
    await page.goto(f"/api/signup?lang={language}")
    assert await page.get_attribute("html", "lang") == language
    await expect(page.locator("h1")).to_have_text(HEADINGS[language])
    assert await axe_violations(page) == []
    if language in {"en", "ja"}:
        await shot(page, f"form-{language}")
    await fill_form(page, f"sam.{language.lower()}@fabrikam.com")
    await page.click("#submit")
    status = page.locator("#status-message")
    await expect(status).to_contain_text(INVITED[language], timeout=30_000)
    await expect(page.locator("#status-heading")).to_be_focused()
    if language in {"en", "ja"}:
        await shot(page, f"status-{language}")
    assert await axe_violations(page) == []


async def test_the_language_follows_accept_language(contexts: NewContext) -> None:
    context = await contexts(locale="de-DE")
    page = await context.new_page()
    await page.goto("/api/signup")
    await expect(page.locator("h1")).to_have_text(HEADINGS["de"])


async def test_field_errors_are_shown_next_to_the_fields_and_summarised(page: Page) -> None:
    await page.goto("/api/signup?lang=en")
    await page.fill("#email", "not-an-address")
    await page.click("#submit")
    summary = page.locator("#error-summary")
    await expect(summary).to_be_visible()
    await expect(summary).to_be_focused()
    await expect(page.locator("#email-error")).to_have_text(re.compile("valid email address"))
    await expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#displayName-error")).to_be_visible()
    await expect(page.locator("#acceptTerms-error")).to_be_visible()
    await page.click("#error-summary-list a >> nth=0")
    await expect(page.locator("#email")).to_be_focused()
    assert await axe_violations(page) == []


async def test_without_javascript_a_form_post_gets_pages(contexts: NewContext) -> None:
    """No script at all: errors come back as a page next to the fields; success lands on the status page."""
    context = await contexts(java_script_enabled=False)
    page = await context.new_page()
    await page.goto("/api/signup?lang=ja")
    await page.fill("#email", "bad")
    await page.click("#submit")
    await expect(page.locator("#error-summary")).to_be_visible()
    await expect(page.locator("#email-error")).to_contain_text("有効なメールアドレス")
    await expect(page.locator("#email")).to_have_value("bad")  # what was typed is kept
    await fill_form(page, "nojs@fabrikam.com")
    await page.click("#submit")
    await page.wait_for_url(re.compile(r"/api/signup/(\d{12})?[A-Za-z0-9_-]{22}\?lang=ja"))
    await expect(page.locator("#status-message")).to_be_visible()
    await shot(page, "result-ja")
    for _ in range(60):
        await page.reload()
        if INVITED["ja"] in (await page.locator("#status-message").text_content() or ""):
            break
        await asyncio.sleep(0.5)
    await expect(page.locator("#status-message")).to_contain_text(INVITED["ja"])
    for language in HEADINGS:  # a normal submission passes in every language without JavaScript too
        await page.goto(f"/api/signup?lang={language}")
        await fill_form(page, f"nojs.{language.lower()}@fabrikam.com")
        await page.click("#submit")
        await page.wait_for_url(re.compile(rf"/api/signup/(\d{{12}})?[A-Za-z0-9_-]{{22}}\?lang={language}"))
        await expect(page.locator("#status-message")).to_be_visible()
        if language == "en":
            await shot(page, "result-en")


async def test_keyboard_only(page: Page) -> None:
    """Tab through the form in order, tick the box with Space, send with Enter."""
    await page.goto("/api/signup?lang=en")
    await page.keyboard.press("Tab")
    await expect(page.locator(".skip-link")).to_be_focused()
    await page.keyboard.press("Enter")
    order = []
    await page.focus("#email")
    await page.keyboard.type("keys@fabrikam.com")
    for text in ("Kim Keys", "Fabrikam", "Because", "Falcon"):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate("document.activeElement.id"))
        await page.keyboard.type(text)
    assert order == ["displayName", "company", "justification", "answer-project"]
    await page.keyboard.press("Tab")
    await expect(page.locator("#acceptTerms")).to_be_focused()
    await page.keyboard.press("Space")
    await page.keyboard.press("Tab")  # the terms link
    await page.keyboard.press("Tab")
    await expect(page.locator("#submit")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#status-message")).to_contain_text(INVITED["en"], timeout=30_000)


async def test_pending_then_approved_on_the_approvers_page(contexts: NewContext) -> None:
    """A domain under review waits; an approver approves it on the approver's page; the guest sees it invited."""
    guest = await contexts()
    page = await guest.new_page()
    await page.goto("/api/signup?lang=en")
    await fill_form(page, "pat@northwind.com")
    await page.click("#submit")
    await expect(page.locator("#status-message")).to_contain_text("Waiting for approval", timeout=30_000)

    approver = await contexts()
    manage = await approver.new_page()
    await manage.goto("/api/manage?lang=en")
    await expect(manage.locator("#function-key")).to_be_focused()
    await manage.fill("#function-key", FUNCTION_KEY)
    await manage.keyboard.press("Enter")
    card = await pending_card(manage, "pat@northwind.com")
    assert await axe_violations(manage) == []
    await shot(manage, "approver-en")
    await card.locator("button", has_text="Approve").click()
    await expect(manage.locator("#manage-message")).to_contain_text("Approved.")
    await expect(page.locator("#status-message")).to_contain_text(INVITED["en"], timeout=30_000)
    await manage.goto("/api/manage?lang=ja")
    await expect(manage.locator("#heading-pending")).to_have_text("承認待ちの申請")
    await shot(manage, "approver-ja")


@pytest.mark.parametrize(("width", "scale"), [(320, 1), (640, 2)], ids=["phone", "zoom-200"])
async def test_no_sideways_scrolling_on_a_phone_or_at_200_percent(contexts: NewContext, width: int, scale: int) -> None:
    """320 CSS px (a phone, or 400 % zoom of 1280) and 640 px at twice the density (200 % zoom): the form fits."""
    context = await contexts(viewport={"width": width, "height": 800}, device_scale_factor=scale)
    page = await context.new_page()
    for path in ("/api/signup?lang=de", "/api/manage?lang=nl"):
        await page.goto(path)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, overflow)
    await page.goto("/api/signup?lang=ja")
    box = await page.locator("#email").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


async def test_the_watch_sees_a_refused_inline_script_and_a_page_without_the_policy(
    browser: Browser, site: str, emulator: GraphEmulator
) -> None:
    """The check the other tests rely on can fail: an injected inline script breaks the CSP and is reported,
    and a page served without the header is named."""
    context = await browser.new_context(base_url=site)
    seen = watch(context)
    page = await context.new_page()
    await page.goto("/api/signup?lang=en")
    assert seen.pages == 1 and seen.problems == []
    await page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = '1'; document.body.append(s); }"
    )
    await eventually(lambda: seen.problems, 5, "the refused script is reported")
    assert "Content Security Policy" in seen.problems[0]
    await context.route(
        "**/api/signup?lang=de", lambda route: route.fulfill(status=200, body="<p>bare</p>", content_type="text/html")
    )
    await page.goto("/api/signup?lang=de")
    assert any("served with Content-Security-Policy None" in p for p in seen.problems), seen.problems
    await context.close()


@pytest.fixture(scope="module")
async def easy_auth_site(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The same pages behind the Easy Auth stand-in, with an approvers' role and a converters' role."""
    logs = tmp_path_factory.mktemp("pages-easyauth")
    env = host_env(
        azurite,
        emulator_server[1],
        SIGNUP_POLICY=POLICY,
        ORGANISATION_NAME="Contoso",
        TERMS_URL="https://contoso.example/terms",
        TERMS_VERSION="2026-01",
        DEVHOST_EASY_AUTH="1",
        MANAGE_EASY_AUTH_ROLE="Signup.Approve",
        MANAGE_CONVERT_EASY_AUTH_ROLE="Signup.Convert",
    )
    async with running_host(env, logs) as (_, url):
        yield url


async def _signed_in(browser: Browser, site: str, roles: str, watches: list[Watch]) -> Page:
    context = await browser.new_context(base_url=site)
    watches.append(watch(context))
    page = await context.new_page()
    await page.goto("/.auth/login/dev?post_login_redirect_uri=/api/manage?lang=en")
    await page.fill("#name", "ann@contoso.com")
    await page.fill("#roles", roles)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r"/api/manage"))
    return page


async def test_with_easy_auth_the_approver_decides_and_a_converter_sees_no_decisions(
    browser: Browser, easy_auth_site: str, emulator: GraphEmulator
) -> None:
    """The page's JSON writes pass the cross-site rules with the session cookie; the page follows the role.
    Every context is watched: each page it loads carries the CSP header, and nothing breaks the policy."""
    guest = await browser.new_context(base_url=easy_auth_site)
    watches = [watch(guest)]
    form = await guest.new_page()
    await form.goto("/api/signup?lang=en")
    await fill_form(form, "kai@northwind.com")
    await form.click("#submit")
    await expect(form.locator("#status-message")).to_contain_text("Waiting for approval", timeout=30_000)

    converter = await _signed_in(browser, easy_auth_site, "Signup.Convert", watches)
    await expect(converter.locator("#no-approver-role")).to_be_visible()
    await expect(converter.locator(".request")).to_have_count(0)
    # The console leaves out what the role cannot use: no pending list, no reviews, no bulk decisions.
    await expect(converter.locator("#tab-overview")).to_be_visible()
    await expect(converter.locator("#tab-pending, #tab-reviews, .bulk, .select-one")).to_have_count(0)
    assert await axe_violations(converter) == []
    await converter.context.close()

    approver = await _signed_in(browser, easy_auth_site, "Signup.Approve", watches)
    card = await pending_card(approver, "kai@northwind.com")
    await expect(approver.locator("#tab-pending")).to_have_attribute("aria-selected", "true")
    await expect(card.locator(".select-one input")).to_be_visible()
    await card.locator("button", has_text="Approve").click()  # no reason: the page sends {}
    await expect(approver.locator("#manage-message")).to_contain_text("Approved.")
    await expect(form.locator("#status-message")).to_contain_text(INVITED["en"], timeout=30_000)
    await approver.context.close()
    await guest.close()
    assert len(watches) == 3 and all(seen.pages > 0 and seen.problems == [] for seen in watches), watches
