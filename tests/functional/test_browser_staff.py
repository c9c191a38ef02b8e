"""The staff pages in headless Chromium: a cashier takes a payment and
prints the ticket, a manager uploads a CSV file with bad rows.

Each step saves a screenshot under artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, expect

from app.settings import Settings
from tests.conftest import LiveServer
from tests.functional.browser import open_page, run_in_thread, screenshot
from tests.office import PASSWORD, add_member, grab_spaces, stores
from tests.support import SaleSetup, make_sale


def log_in(page: Page, settings: Settings, role: str) -> None:
    member = run_in_thread(add_member(settings, role))
    page.fill("#username", member.username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".staff-nav .who")).to_contain_text(f"({role})")


def held_sale(settings: Settings) -> tuple[SaleSetup, str]:
    setup = run_in_thread(make_sale(settings, spaces=3, buyers=3))

    async def grab() -> list[str]:
        async with stores(settings) as (pool, store):
            return await grab_spaces(pool, store, setup, 1)

    return setup, run_in_thread(grab())[0]


def test_cashier_payment_ticket(
    browser: Browser,
    contexts: list[BrowserContext],
    live_server: LiveServer,
    settings: Settings,
) -> None:
    setup, hold_id = held_sale(settings)
    buyer = setup.buyers[0]
    page = open_page(contexts, browser, f"{live_server.url}/staff")
    expect(page.locator("h1")).to_have_text("Sales office: log in")
    log_in(page, settings, "cashier")

    page.goto(f"{live_server.url}/staff/sales/{setup.sale.id}/holds")
    page.fill("#q", buyer.registration_no)
    page.keyboard.press("Enter")
    page.click(f'a[href="/staff/holds/{hold_id}"]')
    expect(page.locator(".status")).to_have_text("held")
    expect(page.locator(".price")).to_have_text("¥10,000")
    screenshot(page, "staff-hold-before-payment")

    page.select_option("#method", "card")
    page.fill("#receipt", "POS-000123")
    page.click("text=Confirm payment and issue the queue number")
    expect(page.locator(".ticket-number")).to_have_text("001")
    expect(page.locator(".ticket-space")).to_contain_text("A-001")
    expect(page.locator(".ticket .registration-no")).to_have_text(buyer.registration_no)
    screenshot(page, "staff-queue-ticket-001")

    page.click("text=Back to the hold")
    page.fill("#contract", "C-2026-0001")
    page.click("text=Record the contract")
    expect(page.locator(".message.ok")).to_have_text("The contract is recorded.")
    expect(page.locator(".status")).to_have_text("signed")
    screenshot(page, "staff-hold-signed")

    page.goto(f"{live_server.url}/staff/sales/{setup.sale.id}/board")
    expect(page.locator("tfoot .signed")).to_have_text("1")
    expect(page.locator("tfoot .free")).to_have_text("2")
    screenshot(page, "staff-live-board")


def test_manager_upload_bad_rows(
    browser: Browser,
    contexts: list[BrowserContext],
    live_server: LiveServer,
    settings: Settings,
    tmp_path: Path,
) -> None:
    setup = run_in_thread(make_sale(settings, spaces=1, buyers=1, arm=False))
    csv = tmp_path / "spaces.csv"
    csv.write_text(
        "label,zone,level,kind,price_yuan\n"
        "B-001,B,B1,standard,9000\n"
        "B-002,B,B1,spaceship,9000\n"
        "B-003,B,B1,large,-5\n",
        encoding="utf-8",
    )
    page = open_page(contexts, browser, f"{live_server.url}/staff")
    log_in(page, settings, "manager")
    page.click(f'a[href="/staff/sales/{setup.sale.id}/manage"]')

    page.set_input_files("#file-spaces", str(csv))
    page.click("text=Upload spaces")

    rows = page.locator("table.bad-rows tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td").first).to_have_text("3")
    expect(rows.nth(1).locator("td").first).to_have_text("4")
    expect(page.locator(".message.error")).to_be_visible()
    expect(page.locator("dd", has_text="spaces,")).to_have_text(
        "1 spaces, 1 registrants"
    )
    screenshot(page, "staff-upload-two-bad-rows")
