"""The admin's console in a real browser (Debian's chromium through Playwright) against the local host, Azurite
and the Graph emulator: every language and every tab axe-clean and within the CSP, keyboard-only tab switching,
filters, paging, a bulk approval that changes the records, dates in the browser's time zone, the overview's
charts with their text equivalents, and a phone's width. Screenshots go to ``screenshots/`` (git-ignored)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from graph_emulator.server import GraphEmulator
from shared.pages.i18n import LANGUAGES, translations
from tests.conftest import FUNCTION_KEY, host_env, running_host
from tests.test_pages_browser import ARGS, CHROMIUM, Watch, axe_violations, shot, watch

pytestmark = pytest.mark.browser

POLICY = str(Path(__file__).resolve().parent / "policies" / "pages.json")
KEY = {"x-functions-key": FUNCTION_KEY}
TABS = ["pending", "decisions", "failures", "conversions", "reviews", "overview"]
RAW_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
# This run's addresses: Azurite outlives the module, so every test finds its own requests by a unique part.
RUN = secrets.token_hex(3)


@pytest.fixture(scope="module")
async def site(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    env = host_env(azurite, emulator_server[1], SIGNUP_POLICY=POLICY, ORGANISATION_NAME="Contoso")
    async with running_host(env, tmp_path_factory.mktemp("console")) as (_, url):
        yield url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        await launched.close()


async def submit(api: httpx.AsyncClient, email: str, name: str) -> str:
    answers = {"answers": {"project": "Falcon"}} if email.endswith("fabrikam.com") else {}
    body = {"email": email, "displayName": name, "company": "Northwind", "justification": "Falcon", **answers}
    response = await api.post("/api/signups", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def settle(api: httpx.AsyncClient, ids: list[str], statuses: set[str]) -> list[dict[str, Any]]:
    """The admin views of ``ids`` once each is in one of ``statuses``."""
    views: list[dict[str, Any]] = []
    for signup_id in ids:
        for _ in range(150):
            view = (await api.get(f"/api/manage/signups/{signup_id}", headers=KEY)).json()
            if view["status"] in statuses:
                break
            await asyncio.sleep(0.2)
        assert view["status"] in statuses, view
        views.append(view)
    return views


@pytest.fixture(scope="module")
async def seeded(site: str, emulator_server: tuple[GraphEmulator, str]) -> dict[str, Any]:
    """This run's requests: four under review on northwind.com (profile northwind), two on another domain
    (the default review), two invited on fabrikam.com, one failed (the address is a member's: ExistingMember)."""
    member = f"m.{RUN}@fabrikam.com"
    emulator_server[0].add_user(
        mail=f"m.{RUN}@contoso.com", otherMails=[member], userPrincipalName=f"m.{RUN}@contoso.com"
    )
    async with httpx.AsyncClient(base_url=site, timeout=20) as api:
        north = [await submit(api, f"n{i}.{RUN}@northwind.com", f"North {i} {RUN}") for i in range(4)]
        other = [await submit(api, f"t{i}.{RUN}@tailspin-{RUN}.example", f"Tail {i} {RUN}") for i in range(2)]
        invited = [await submit(api, f"f{i}.{RUN}@fabrikam.com", f"Fab {i} {RUN}") for i in range(2)]
        views = await settle(api, north + other, {"pending_approval"})
        await settle(api, invited, {"invited"})
        failed = [await submit(api, member, f"Member {RUN}")]
        await settle(api, failed, {"failed"})
    return {"north": north, "other": other, "invited": invited, "failed": failed, "views": {v["id"]: v for v in views}}


@pytest.fixture
async def watched(browser: Browser, site: str, seeded: dict[str, Any]) -> AsyncIterator[list[tuple[Any, Watch]]]:
    """Browser contexts on the site, each watched; afterwards none may have seen a CSP violation, a page without
    the policy, or a script error."""
    made: list[tuple[Any, Watch]] = []
    yield made
    for context, _ in made:
        await context.close()
    for _, seen in made:
        assert seen.pages > 0 and seen.problems == [], seen


async def console(browser: Browser, site: str, made: list[tuple[Any, Watch]], path: str, **options: Any) -> Page:
    context = await browser.new_context(base_url=site, **options)
    made.append((context, watch(context)))
    page = await context.new_page()
    separator = "&" if "?" in path else "?"
    await page.goto(f"{path}{separator}code={FUNCTION_KEY}")
    await expect(page.locator("#console")).to_be_visible()
    return page


async def loaded(page: Page, tab: str) -> None:
    """The tab's list or overview has answered (its message is no longer 'working')."""
    message = page.locator(f"#{tab}-message")
    await expect(message).not_to_have_text("")
    working = translations(await page.get_attribute("html", "lang") or "en").gettext("Working…")
    await expect(message).not_to_have_text(working, timeout=20_000)


def cards(page: Page, list_id: str, text: str = RUN) -> Locator:
    return page.locator(f"#{list_id} > .request", has_text=text)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_tab_in_every_language_is_accessible_and_shows_no_raw_dates(
    browser: Browser, site: str, watched: list[tuple[Any, Watch]], language: str
) -> None:
    page = await console(browser, site, watched, f"/api/manage?lang={language}")
    _ = translations(language).gettext
    await expect(page.locator("h1")).to_have_text(_("Sign-up console"))
    await expect(page.locator("#tab-overview")).to_have_text(_("Overview"))
    for tab in TABS:
        await page.click(f"#tab-{tab}")
        await expect(page.locator(f"#panel-{tab}")).to_be_visible()
        await loaded(page, tab)
        if tab == "pending":  # the requests no test decides
            await expect(cards(page, "requests", f"tailspin-{RUN}")).to_have_count(2)
        if tab == "overview":
            await expect(page.locator("#overview-body svg.chart").first).to_be_visible()
        violations = await axe_violations(page)
        assert violations == [], (language, tab, violations)
        text = await page.locator("main").inner_text()
        assert not RAW_ISO.search(text), (language, tab, RAW_ISO.search(text))
        if language in {"en", "ja"} and tab in {"pending", "overview"}:
            await shot(page, f"console-{tab}-{language}")


async def test_tabs_switch_by_keyboard_alone(browser: Browser, site: str, watched: list[tuple[Any, Watch]]) -> None:
    """WAI-ARIA tabs: Tab reaches the selected tab only, arrows (wrapping), Home and End move and select."""
    page = await console(browser, site, watched, "/api/manage?lang=en")
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.getAttribute('role')") == "tab":
            break
    await expect(page.locator("#tab-pending")).to_be_focused()

    async def selected(tab: str) -> None:
        await expect(page.locator(f"#tab-{tab}")).to_be_focused()
        await expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-selected", "true")
        await expect(page.locator(f"#panel-{tab}")).to_be_visible()
        assert await page.locator("[role=tabpanel]:visible").count() == 1
        assert await page.locator("[role=tab][tabindex='0']").count() == 1

    await page.keyboard.press("ArrowRight")
    await selected("decisions")
    await page.keyboard.press("End")
    await selected("overview")
    await page.keyboard.press("ArrowRight")
    await selected("pending")
    await page.keyboard.press("ArrowLeft")
    await selected("overview")
    await page.keyboard.press("Home")
    await selected("pending")
    await page.keyboard.press("Tab")  # out of the tab list, into the panel
    await expect(page.locator("#panel-pending")).to_be_focused()
    assert "tab=pending" in page.url


async def test_filters_search_sort_and_load_more(
    browser: Browser, site: str, watched: list[tuple[Any, Watch]], seeded: dict[str, Any]
) -> None:
    page = await console(browser, site, watched, "/api/manage?lang=en&pageSize=2")
    await loaded(page, "pending")
    # Paging: two per page; Load more appends the next page and moves the focus to its first request.
    listed = cards(page, "requests")
    await expect(page.locator("#pending-more")).to_be_visible()
    before = await page.locator("#requests > .request").count()
    await page.click("#pending-more")
    await loaded(page, "pending")
    assert await page.locator("#requests > .request").count() > before
    await expect(page.locator("#requests h3:focus")).to_have_count(1)

    await page.fill("#pending-domain", f"tailspin-{RUN}.example")
    await page.fill("#pending-from", (datetime.now(UTC) - timedelta(days=3)).date().isoformat())
    await page.click("#pending-filters button[type=submit]")
    await loaded(page, "pending")
    await expect(listed).to_have_count(2)
    await expect(page.locator("#requests > .request")).to_have_count(2)
    # Newest or oldest first (the index orders by the minute of the request, within a minute by id).
    for sort, direction in (("oldest", 1), ("newest", -1)):
        await page.select_option("#pending-sort", sort)
        await page.click("#pending-filters button[type=submit]")
        await loaded(page, "pending")
        await expect(listed).to_have_count(2)
        moments = await page.locator("#requests > .request time.created").evaluate_all(
            "times => times.map(t => t.dateTime.slice(0, 16))"
        )
        assert moments == sorted(moments, reverse=direction < 0), (sort, moments)

    await page.click("#pending-filters button[type=reset]")
    await page.fill("#pending-q", f"N2.{RUN}@NorthWind.com")  # exact, whatever the case
    await page.click("#pending-filters button[type=submit]")
    await loaded(page, "pending")
    await expect(page.locator("#requests > .request")).to_have_count(1)
    await expect(listed).to_contain_text(f"n2.{RUN}@northwind.com")

    await page.click("#pending-filters button[type=reset]")
    await page.select_option("#pending-profile", "northwind")
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    await page.fill("#pending-from", tomorrow)
    await page.click("#pending-filters button[type=submit]")
    await loaded(page, "pending")
    await expect(page.locator("#requests > .request")).to_have_count(0)
    await expect(page.locator("#pending-message")).to_have_text("Nothing matches these filters.")

    # Recent decisions, by status: the invited requests of this run are not decisions (the policy admitted them).
    await page.click("#tab-failures")
    await loaded(page, "failures")
    await page.click("#tab-decisions")
    await page.select_option("#decisions-status", "invited")
    await page.fill("#decisions-domain", "fabrikam.com")
    await page.click("#decisions-filters button[type=submit]")
    await loaded(page, "decisions")
    await expect(cards(page, "decisions-list")).to_have_count(0)


async def test_bulk_approval_with_one_reason_changes_the_records(
    browser: Browser, site: str, watched: list[tuple[Any, Watch]], seeded: dict[str, Any]
) -> None:
    page = await console(browser, site, watched, "/api/manage?lang=en")
    await page.fill("#pending-domain", "northwind.com")
    await page.click("#pending-filters button[type=submit]")
    await loaded(page, "pending")
    chosen = seeded["north"][:2]
    # Denying needs the reason: nothing is sent without it.
    await page.check(f"#select-{chosen[0]}")
    await page.click("#pending-bulk-no")
    await expect(page.locator("#pending-bulk-error")).to_have_text("A reason is required to deny.")
    await expect(page.locator("#pending-bulk-reason")).to_be_focused()
    await page.check(f"#select-{chosen[1]}")
    await expect(page.locator("#pending-selected")).to_have_text("Selected: 2")
    await page.fill("#pending-bulk-reason", f"Known partner {RUN}")
    await page.click("#pending-bulk-yes")
    await expect(page.locator("#pending-message")).to_have_text("Done. Approved: 2")
    for signup_id in chosen:
        await expect(page.locator(f"#request-{signup_id}")).to_have_count(0)
    async with httpx.AsyncClient(base_url=site, timeout=20) as api:
        for view in await settle(api, chosen, {"queued", "inviting", "invited"}):
            assert view["decision"]["outcome"] == "approved" and view["decision"]["reason"] == f"Known partner {RUN}"
        untouched = (await api.get(f"/api/manage/signups/{seeded['north'][2]}", headers=KEY)).json()
        assert untouched["status"] == "pending_approval" and untouched["decision"] is None
    # The decisions now show in Recent decisions, with who and why.
    await page.click("#tab-decisions")
    await page.fill("#decisions-q", f"n0.{RUN}@northwind.com")
    await page.click("#decisions-filters button[type=submit]")
    await loaded(page, "decisions")
    await expect(cards(page, "decisions-list")).to_contain_text("Approved by function-key")
    await expect(cards(page, "decisions-list")).to_contain_text(f"Known partner {RUN}")


@pytest.mark.parametrize(
    ("locale", "zone", "clock", "zone_name"),
    [
        ("ja-JP", "Asia/Tokyo", "%H:%M", "JST"),
        ("en-US", "America/New_York", "%I:%M %p", "E"),  # EST or EDT, whichever the day has
        ("de-DE", "Europe/Berlin", "%H:%M", "ME"),  # MEZ or MESZ
    ],
)
async def test_times_are_in_the_readers_language_and_time_zone(
    browser: Browser,
    site: str,
    watched: list[tuple[Any, Watch]],
    seeded: dict[str, Any],
    locale: str,
    zone: str,
    clock: str,
    zone_name: str,
) -> None:
    """The language comes from Accept-Language (the browser's locale), the time zone from the browser."""
    page = await console(browser, site, watched, "/api/manage", locale=locale, timezone_id=zone)
    await loaded(page, "pending")
    signup_id = seeded["other"][0]
    created = seeded["views"][signup_id]["createdAt"]
    shown = page.locator(f"#request-{signup_id} time.created")
    await expect(shown).to_have_attribute("datetime", created)
    local = datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    text = await shown.inner_text()
    assert local.strftime(clock) in text and str(local.year) in text, (text, local)
    assert zone_name in text and not RAW_ISO.search(text), text


@pytest.mark.parametrize(("width", "scale"), [(320, 1), (640, 2)], ids=["phone", "zoom-200"])
async def test_the_console_fits_a_phone_and_200_percent(
    browser: Browser, site: str, watched: list[tuple[Any, Watch]], width: int, scale: int
) -> None:
    page = await console(
        browser,
        site,
        watched,
        "/api/manage?lang=de",
        viewport={"width": width, "height": 800},
        device_scale_factor=scale,
    )
    for tab in TABS:
        await page.click(f"#tab-{tab}")
        await loaded(page, tab)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (tab, overflow)


async def test_the_overview_draws_the_stats_with_text_equivalents(
    browser: Browser, site: str, watched: list[tuple[Any, Watch]], seeded: dict[str, Any]
) -> None:
    page = await console(browser, site, watched, "/api/manage?lang=en&tab=overview")
    await loaded(page, "overview")
    async with httpx.AsyncClient(base_url=site, timeout=20) as api:
        stats = (await api.get("/api/manage/stats", params={"days": "30"}, headers=KEY)).json()
    total = sum(sum(day["counts"].values()) for day in stats["days"])
    per_day = page.locator("#overview-body svg.chart").first
    label = await per_day.get_attribute("aria-label") or ""
    assert f"{total:,} in all" in label, (label, total)
    assert await per_day.get_attribute("role") == "img"
    bars = per_day.locator("rect.bar")
    assert await bars.count() == sum(len([n for n in day["counts"].values() if n]) for day in stats["days"])
    # The table equivalent: one row per day, the totals agreeing with the API's.
    table = page.locator("#overview-body table").first
    await expect(table.locator("tbody tr")).to_have_count(len(stats["days"]))
    totals = [int(t.replace(",", "")) for t in await table.locator("tbody tr td:last-child").all_text_contents()]
    assert totals == [sum(day["counts"].values()) for day in stats["days"]]
    # Every colour comes from a class (no inline style, no fill attribute).
    assert await page.locator("#overview-body [style], #overview-body [fill]").count() == 0
    # Failures by code, with the cause and the fix the API gives; and the failed request on the Failures tab.
    failure = next(f for f in stats["failures"] if f["code"] == "ExistingMember")
    row = page.locator("#overview-body table tr", has_text="ExistingMember")
    await expect(row.locator("td").nth(0)).to_have_text(str(failure["count"]))
    await expect(row.locator("td").nth(1)).to_have_text(failure["cause"])
    await expect(row.locator("td").nth(2)).to_have_text(failure["fix"])
    if stats["timeToInvite"]["count"]:
        await expect(page.locator("#overview-body")).to_contain_text(f"{stats['timeToInvite']['count']} invitations.")
    budget = stats["budget"]
    await expect(page.locator("#overview-body")).to_contain_text(f"of {budget['limit']:,} writes in the last")
    await page.click("#tab-failures")
    await loaded(page, "failures")
    card = page.locator(f"#request-{seeded['failed'][0]}")
    await expect(card).to_contain_text("ExistingMember")
    await expect(card).to_contain_text("Failed")


async def test_a_part_the_server_lacks_is_said_to_be_unavailable(
    browser: Browser, site: str, watched: list[tuple[Any, Watch]]
) -> None:
    """A route answering 404 without a problem (an app deployed without it) shows a line, never made-up data."""
    page = await console(browser, site, watched, "/api/manage?lang=en")
    await page.context.route("**/api/manage/stats*", lambda route: route.fulfill(status=404, body="Not Found"))
    await page.click("#tab-overview")
    await expect(page.locator("#overview-message")).to_have_text(
        "This part of the console is not available on this server yet."
    )
    await expect(page.locator("#overview-body *")).to_have_count(0)


LIFECYCLE_POLICY = {
    "profiles": [
        {
            "name": "reviewed",
            "domains": ["woodgrove.com"],
            "action": "approve",
            "groups": [],
            "approvers": ["boss@contoso.com"],
            # Days of one second (GUEST_LIFECYCLE_DAY_SECONDS): up for review after 2 s, and nothing happens
            # without an answer, so the guests wait for the page's decision.
            "lifecycle": {
                "reviewEveryDays": 2,
                "reviewGraceDays": 1,
                "onNoAnswer": "none",
                "onRemove": "blockSignIn",
            },
        }
    ]
}


@pytest.fixture(scope="module")
async def lifecycle_site(
    azurite: str, emulator_server: tuple[GraphEmulator, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A host whose profile has lifecycle rules, its sweep every second and its days one second long."""
    logs = tmp_path_factory.mktemp("console-lifecycle")
    policy = logs / "policy.json"
    policy.write_text(json.dumps(LIFECYCLE_POLICY), encoding="utf-8")
    env = host_env(
        azurite,
        emulator_server[1],
        SIGNUP_POLICY=str(policy),
        ORGANISATION_NAME="Contoso",
        GUEST_LIFECYCLE_DAY_SECONDS="1",
        GUEST_SWEEP_SCHEDULE="*/1 * * * * *",
    )
    async with running_host(env, logs) as (_, url):
        yield url


async def test_reviews_keep_remove_and_restore_guests(
    browser: Browser, lifecycle_site: str, watched: list[tuple[Any, Watch]], emulator: GraphEmulator
) -> None:
    """Two guests come up for review: one kept, one removed (blocked) in bulk, then restored from the page."""
    async with httpx.AsyncClient(base_url=lifecycle_site, timeout=20) as api:
        ids = [await submit(api, f"w{i}.{RUN}@woodgrove.com", f"Wood {i} {RUN}") for i in range(2)]
        views = await settle(api, ids, {"invited"})
        users = [str(v["invitation"]["invitedUserId"]) for v in views]
        for _ in range(150):
            listed = (await api.get("/api/manage/reviews", headers=KEY)).json()["items"]
            if set(users) <= {item["userId"] for item in listed}:
                break
            await asyncio.sleep(0.3)
        assert set(users) <= {item["userId"] for item in listed}, listed
    kept, removed = users
    page = await console(browser, lifecycle_site, watched, "/api/manage?lang=en&tab=reviews")
    await loaded(page, "reviews")
    for i, user in enumerate(users):  # named from the sign-up that let the guest in
        await expect(page.locator(f"#guest-heading-{user}")).to_have_text(f"Wood {i} {RUN} <w{i}.{RUN}@woodgrove.com>")
    await expect(page.get_by_label(f"Select Wood 0 {RUN} <w0.{RUN}@woodgrove.com>")).to_have_count(1)
    assert await axe_violations(page) == []
    await shot(page, "console-reviews-en")

    await page.check(f"#select-{kept}")
    await page.click("#reviews-bulk-yes")
    await expect(page.locator("#reviews-message")).to_have_text("Done. Kept: 1")
    await page.check(f"#select-{removed}")
    await page.fill("#reviews-bulk-reason", "Project over")
    await page.click("#reviews-bulk-no")
    await expect(page.locator("#reviews-message")).to_have_text("Done. Removed: 1")
    await expect(page.locator(f"#reviews-list [data-id='{kept}'], #reviews-list [data-id='{removed}']")).to_have_count(
        0
    )
    assert emulator.users[removed]["accountEnabled"] is False

    await page.select_option("#guests-state", "blocked")
    await page.click("#guests-filters button[type=submit]")
    card = page.locator(f"#guests-list [data-id='{removed}']")
    await expect(card).to_contain_text("Blocked")
    await card.locator("button", has_text="Restore").click()
    await expect(page.locator("#guests-message")).to_have_text(f"Restored: Wood 1 {RUN} <w1.{RUN}@woodgrove.com>.")
    await expect(card).to_contain_text("Active")
    assert emulator.users[removed]["accountEnabled"] is True
    async with httpx.AsyncClient(base_url=lifecycle_site, timeout=20) as api:
        blocked = (await api.get("/api/manage/guests", params={"state": "blocked"}, headers=KEY)).json()["items"]
        assert removed not in {item["userId"] for item in blocked}
