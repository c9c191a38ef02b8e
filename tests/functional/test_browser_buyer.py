"""The buyer page in headless Chromium against the live service.

Each step saves a screenshot under artifacts/screenshots/.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route, expect

from app.settings import Settings
from tests.conftest import LiveServer
from tests.functional.browser import PHONE, open_page, run_in_thread, screenshot
from tests.office import stores
from tests.support import Buyer, SaleSetup, make_sale

# Seconds from creating the sale to its launch: enough for two buyers to
# log in and shortlist on a slow machine, short enough to keep the test fast.
OPENS_IN_SECONDS = 15.0


def log_in(page: Page, buyer: Buyer) -> None:
    page.fill("#registration-no", buyer.registration_no)
    page.fill("#access-code", buyer.access_code)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#buyer")).to_be_visible()


async def execute(settings: Settings, query: str, *args: Any) -> None:
    assert settings.database_url
    connection = await asyncpg.connect(settings.database_url)
    try:
        await connection.execute(query, *args)
    finally:
        await connection.close()


def sale_url(live_server: LiveServer, setup: SaleSetup) -> str:
    return f"{live_server.url}/sales/{setup.sale.id}"


def test_grab_at_launch_two_buyers(
    browser: Browser,
    contexts: list[BrowserContext],
    live_server: LiveServer,
    settings: Settings,
) -> None:
    setup = run_in_thread(
        make_sale(settings, spaces=6, buyers=2, opens_in=OPENS_IN_SECONDS)
    )
    url = sale_url(live_server, setup)

    # Before the launch: both buyers log in, see the countdown, shortlist.
    first = open_page(contexts, browser, url)
    log_in(first, setup.buyers[0])
    expect(first.locator("#welcome")).to_contain_text("not open yet")
    expect(first.locator("#countdown")).to_contain_text("Opens in")
    expect(first.locator("#clock")).to_contain_text("server's clock")
    first.click('button.space[data-label="A-001"]')
    first.click('button.space[data-label="A-002"]')
    expect(first.locator("#shortlist li")).to_have_count(2)
    expect(first.locator("#grab")).to_be_disabled()
    screenshot(first, "buyer-1-before-launch")

    second = open_page(contexts, browser, url)
    log_in(second, setup.buyers[1])
    second.click('button.space[data-label="A-001"]')
    expect(second.locator("#shortlist li")).to_have_count(1)
    screenshot(second, "buyer-2-before-launch")

    # At the launch the button turns on by itself; a double click sends one
    # request.
    grabs: list[Request] = []
    first.on(
        "request",
        lambda request: (
            grabs.append(request)
            if request.method == "POST" and request.url.endswith("/holds")
            else None
        ),
    )
    expect(first.locator("#grab")).to_be_enabled(timeout=OPENS_IN_SECONDS * 2000)
    expect(first.locator("#countdown")).to_have_text("The sale is open.")
    first.locator("#grab").dblclick()
    result = first.locator("#grab-result")
    expect(result).to_contain_text("You won A-001")
    expect(result).to_contain_text("Amount: ¥10,000")
    expect(result).to_contain_text("Pay by")
    expect(result).to_contain_text(settings.sales_office_address)
    expect(first.locator("#mine")).to_contain_text("held for you, not paid yet")
    first.wait_for_timeout(500)
    screenshot(first, "buyer-1-won")
    assert len(grabs) == 1
    assert grabs[0].post_data_json == {"spaces": ["A-001", "A-002"]}

    # The second buyer's page greys the space out without a reload, and the
    # grab returns "taken" with the free spaces listed.
    taken = second.locator('button.space[data-label="A-001"]')
    expect(taken).to_have_class(re.compile(r"\btaken\b"))
    expect(taken).to_be_disabled()
    expect(second.locator("#shortlist li")).to_contain_text("(taken)")
    screenshot(second, "buyer-2-sees-taken")
    second.click("#grab")
    lost = second.locator("#grab-result")
    expect(lost).to_contain_text("Taken")
    expect(lost).to_contain_text("A-001 is already taken.")
    expect(lost).to_contain_text("Still free: A-002, A-003")
    screenshot(second, "buyer-2-told-taken")


def test_grab_retry_reuses_key(
    browser: Browser,
    contexts: list[BrowserContext],
    live_server: LiveServer,
    settings: Settings,
) -> None:
    setup = run_in_thread(make_sale(settings, spaces=3, buyers=1))
    page = open_page(contexts, browser, sale_url(live_server, setup))
    keys: list[str] = []

    def fail_first_attempt(route: Route, request: Request) -> None:
        keys.append(request.headers["idempotency-key"])
        if len(keys) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/sales/*/holds", fail_first_attempt)
    log_in(page, setup.buyers[0])
    page.click('button.space[data-label="A-002"]')
    page.click("#grab")

    expect(page.locator("#grab-result")).to_contain_text("You won A-002")
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert re.fullmatch(r"[0-9a-f]{32}", keys[0])


def test_login_messages(
    browser: Browser,
    contexts: list[BrowserContext],
    live_server: LiveServer,
    settings: Settings,
) -> None:
    setup = run_in_thread(make_sale(settings, spaces=2, buyers=1))
    over = run_in_thread(
        make_sale(settings, spaces=2, buyers=1, opens_in=-7200, duration=3600)
    )

    page = open_page(contexts, browser, sale_url(live_server, setup))
    page.fill("#registration-no", setup.buyers[0].registration_no)
    page.fill("#access-code", "wrong-code")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-message")).to_have_text(
        "The registration number or the access code is wrong."
    )
    screenshot(page, "login-wrong-code")

    closed = open_page(contexts, browser, sale_url(live_server, over))
    expect(closed.locator("#countdown")).to_have_text("This sale is over.")
    log_in(closed, over.buyers[0])
    expect(closed.locator("#welcome")).to_contain_text("this sale is over")
    expect(closed.locator("#phase-message a")).to_have_attribute(
        "href", re.compile(rf"/sales/{over.sale.id}/results$")
    )
    screenshot(closed, "login-sale-over")


def test_phone_keyboard_only(
    browser: Browser,
    contexts: list[BrowserContext],
    live_server: LiveServer,
    settings: Settings,
) -> None:
    setup = run_in_thread(make_sale(settings, spaces=4, buyers=1))
    buyer = setup.buyers[0]
    page = open_page(contexts, browser, sale_url(live_server, setup), PHONE)
    screenshot(page, "phone-360-login")

    def tab_to(selector: str, backwards: bool = False) -> None:
        for _ in range(20):
            page.keyboard.press("Shift+Tab" if backwards else "Tab")
            if page.evaluate(
                "(selector) => document.activeElement.matches(selector)", selector
            ):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#registration-no")
    page.keyboard.type(buyer.registration_no)
    page.keyboard.press("Tab")
    page.keyboard.type(buyer.access_code)
    page.keyboard.press("Enter")
    expect(page.locator("#buyer")).to_be_visible()

    tab_to('button.space[data-label="A-001"]')
    page.keyboard.press("Enter")
    expect(page.locator('button.space[data-label="A-001"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    tab_to("#grab", backwards=True)
    page.keyboard.press("Enter")
    expect(page.locator("#grab-result")).to_contain_text("You won A-001")

    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    screenshot(page, "phone-360-won")


def test_paid_hold_shows_qr(
    browser: Browser,
    contexts: list[BrowserContext],
    live_server: LiveServer,
    settings: Settings,
) -> None:
    setup = run_in_thread(make_sale(settings, spaces=3, buyers=2))
    page = open_page(contexts, browser, sale_url(live_server, setup), PHONE)
    log_in(page, setup.buyers[0])
    page.click('button.space[data-label="A-003"]')
    page.click("#grab")
    expect(page.locator("#grab-result")).to_contain_text("You won A-003")

    # Confirming a payment belongs to the staff API; here the test records it.
    run_in_thread(
        execute(
            settings,
            "UPDATE holds SET status = 'paid', queue_no = 1, paid_at = now(), "
            "paid_fen = price_fen WHERE sale_id = $1",
            setup.sale.id,
        )
    )
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.reload()
    expect(page.locator("#mine .queue-no")).to_have_text("001")
    expect(page.locator("#mine .qr svg")).to_be_visible()
    expect(page.locator("#mine .reference")).to_contain_text(f"{setup.sale.id}-")
    screenshot(page, "phone-360-paid-qr")
    # The inline SVG and everything else must pass the page's policy.
    assert not [text for text in console if "Content Security Policy" in text]

    run_in_thread(
        execute(
            settings, "UPDATE sales SET state = 'closed' WHERE id = $1", setup.sale.id
        )
    )
    page.goto(f"{sale_url(live_server, setup)}/results")
    row = page.locator("table.results tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("A-003")
    expect(row).to_contain_text(setup.buyers[0].registration_no[-4:])
    expect(row).not_to_contain_text(setup.buyers[0].registration_no)
    screenshot(page, "phone-360-results")


def test_availability_polling_backs_off(
    browser: Browser,
    contexts: list[BrowserContext],
    live_server: LiveServer,
    settings: Settings,
) -> None:
    setup = run_in_thread(make_sale(settings, spaces=2, buyers=1))
    polls: list[dict[str, str]] = []

    def answer(route: Route, request: Request) -> None:
        polls.append(request.headers)
        if len(polls) <= 2:
            route.continue_()
        else:
            route.fulfill(
                status=429,
                headers={"Retry-After": "30", "Content-Type": "application/json"},
                body='{"error": "too_many_requests", "message": "Slow down."}',
            )

    context = browser.new_context()
    contexts.append(context)
    page = context.new_page()
    page.route("**/api/sales/*/availability", answer)
    page.goto(sale_url(live_server, setup))
    expect(page.locator("#free-count")).to_have_text("2 of 2 spaces free.")
    page.wait_for_timeout(12_000)

    # 200, then 304 with the ETag, then 429: the next poll waits about 30 s.
    assert len(polls) == 3
    assert "if-none-match" not in polls[0]
    assert polls[1]["if-none-match"].startswith('"')
    assert polls[2]["if-none-match"] == polls[1]["if-none-match"]


def test_pause_disables_grab(
    browser: Browser,
    contexts: list[BrowserContext],
    live_server: LiveServer,
    settings: Settings,
) -> None:
    setup = run_in_thread(make_sale(settings, spaces=2, buyers=1))

    async def set_state(target: str) -> None:
        async with stores(settings, max_size=1) as (_, store):
            assert await store.set_state(setup.sale.id, target)

    page = open_page(contexts, browser, sale_url(live_server, setup))
    log_in(page, setup.buyers[0])
    page.click('button.space[data-label="A-002"]')
    expect(page.locator("#grab")).to_be_enabled()

    run_in_thread(set_state("paused"))
    expect(page.locator("#countdown")).to_have_text(
        "The sale is paused by the sales office."
    )
    expect(page.locator("#grab")).to_be_disabled()
    screenshot(page, "buyer-sale-paused")

    run_in_thread(set_state("armed"))
    expect(page.locator("#countdown")).to_have_text("The sale is open.")
    expect(page.locator("#grab")).to_be_enabled()
