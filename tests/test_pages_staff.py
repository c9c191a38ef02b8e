"""The staff pages over real HTTP: login, forms with CSRF checks, uploads."""

from __future__ import annotations

import re

import httpx
import pytest

from app.hold_refs import HoldRefs
from app.settings import Settings
from tests.office import PASSWORD, add_member, grab_spaces, hold_row, stores
from tests.support import SaleSetup, make_sale, run


def log_in(http: httpx.Client, role: str, settings: Settings) -> None:
    member = run(add_member(settings, role))
    response = http.post(
        "/staff/login",
        data={"username": member.username, "password": PASSWORD, "next": "/staff"},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/staff"


def form_token(http: httpx.Client, path: str) -> str:
    page = http.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert found, "the page has no form token"
    return found.group(1)


def held_sale(settings: Settings, holds: int = 1) -> tuple[SaleSetup, list[str]]:
    setup = run(make_sale(settings, spaces=4, buyers=4))

    async def grab() -> list[str]:
        async with stores(settings) as (pool, store):
            return await grab_spaces(pool, store, setup, holds)

    return setup, run(grab())


def hold_status(settings: Settings, hold_id: str) -> object:
    async def read() -> object:
        async with stores(settings, max_size=1) as (pool, _):
            return (await hold_row(pool, hold_id))["status"]

    return run(read())


def test_staff_page_needs_login(http: httpx.Client) -> None:
    response = http.get("/staff/sales/1/holds")

    assert response.status_code == 303
    assert response.headers["location"] == "/staff/login?next=/staff/sales/1/holds"


def test_staff_login_wrong_password(http: httpx.Client, settings: Settings) -> None:
    member = run(add_member(settings, "cashier"))

    response = http.post(
        "/staff/login", data={"username": member.username, "password": "nope"}
    )

    assert response.status_code == 401
    assert "The username or the password is wrong." in response.text
    assert "parking_staff" not in response.cookies


def test_staff_login_ignores_outside_next(
    http: httpx.Client, settings: Settings
) -> None:
    member = run(add_member(settings, "cashier"))

    response = http.post(
        "/staff/login",
        data={
            "username": member.username,
            "password": PASSWORD,
            "next": "//evil.example/staff",
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/staff"


def test_payment_form_issues_ticket(http: httpx.Client, settings: Settings) -> None:
    setup, (hold_id,) = held_sale(settings)
    log_in(http, "cashier", settings)
    token = form_token(http, f"/staff/holds/{hold_id}")

    paid = http.post(
        f"/staff/holds/{hold_id}/payment",
        data={
            "csrf_token": token,
            "amount": "10,000",
            "method": "card",
            "receipt_no": "R-1",
        },
    )
    ticket = http.get(f"/staff/holds/{hold_id}/ticket")

    assert paid.status_code == 303
    assert paid.headers["location"] == f"/staff/holds/{hold_id}/ticket"
    assert ticket.status_code == 200
    assert '<p class="ticket-number">001</p>' in ticket.text
    assert setup.buyers[0].registration_no in ticket.text
    assert "A-001" in ticket.text


def test_payment_form_without_token(http: httpx.Client, settings: Settings) -> None:
    _, (hold_id,) = held_sale(settings)
    log_in(http, "cashier", settings)
    form = {"amount": "10000", "method": "cash", "receipt_no": "R-2"}

    missing = http.post(f"/staff/holds/{hold_id}/payment", data=form)
    forged = http.post(
        f"/staff/holds/{hold_id}/payment", data={**form, "csrf_token": "0" * 64}
    )

    assert missing.status_code == 403
    assert "The form has expired" in missing.text
    assert forged.status_code == 403
    assert hold_status(settings, hold_id) == "held"


def test_payment_form_other_origin(http: httpx.Client, settings: Settings) -> None:
    _, (hold_id,) = held_sale(settings)
    log_in(http, "cashier", settings)
    token = form_token(http, f"/staff/holds/{hold_id}")

    response = http.post(
        f"/staff/holds/{hold_id}/payment",
        data={"csrf_token": token, "amount": "10000", "method": "cash"},
        headers={"Origin": "http://attacker.invalid"},
    )

    assert response.status_code == 403
    assert "not from this site" in response.text
    assert hold_status(settings, hold_id) == "held"


def test_payment_form_bad_amount(http: httpx.Client, settings: Settings) -> None:
    _, (hold_id,) = held_sale(settings)
    log_in(http, "cashier", settings)
    token = form_token(http, f"/staff/holds/{hold_id}")

    response = http.post(
        f"/staff/holds/{hold_id}/payment",
        data={
            "csrf_token": token,
            "amount": "ten",
            "method": "cash",
            "receipt_no": "R-3",
        },
    )

    assert response.status_code == 400
    assert "is not a number of yuan" in response.text
    assert hold_status(settings, hold_id) == "held"


@pytest.mark.parametrize("amount", ["1e30", "10,5", "1_0000", "\uff11\uff10"])
def test_payment_form_loose_amount(
    http: httpx.Client, settings: Settings, amount: str
) -> None:
    _, (hold_id,) = held_sale(settings)
    log_in(http, "cashier", settings)
    token = form_token(http, f"/staff/holds/{hold_id}")

    response = http.post(
        f"/staff/holds/{hold_id}/payment",
        data={
            "csrf_token": token,
            "amount": amount,
            "method": "cash",
            "receipt_no": "R-5",
        },
    )

    assert response.status_code == 400
    assert "is not a number of yuan" in response.text
    assert hold_status(settings, hold_id) == "held"


def test_payment_form_rejects_nul(http: httpx.Client, settings: Settings) -> None:
    _, (hold_id,) = held_sale(settings)
    log_in(http, "cashier", settings)
    token = form_token(http, f"/staff/holds/{hold_id}")

    response = http.post(
        f"/staff/holds/{hold_id}/payment",
        data={
            "csrf_token": token,
            "amount": "10000",
            "method": "cash",
            "receipt_no": "R-\x004",
        },
    )

    assert response.status_code == 400
    assert "must not contain control characters" in response.text
    assert hold_status(settings, hold_id) == "held"


@pytest.mark.parametrize("scanned", [True, False])
def test_find_opens_hold(http: httpx.Client, settings: Settings, scanned: bool) -> None:
    _, (hold_id,) = held_sale(settings)
    log_in(http, "cashier", settings)
    assert settings.secret_key
    text = HoldRefs(settings.secret_key).sign(hold_id) + "\n" if scanned else hold_id

    response = http.get("/staff/find", params={"q": text})

    assert response.status_code == 303
    assert response.headers["location"] == f"/staff/holds/{hold_id}"


def test_find_rejects_forged_reference(http: httpx.Client, settings: Settings) -> None:
    _, (hold_id,) = held_sale(settings)
    log_in(http, "cashier", settings)

    response = http.get("/staff/find", params={"q": HoldRefs("other").sign(hold_id)})

    assert response.status_code == 400
    assert "not a valid hold reference" in response.text


def test_search_page_lists_holds(http: httpx.Client, settings: Settings) -> None:
    setup, hold_ids = held_sale(settings, holds=2)
    log_in(http, "cashier", settings)

    response = http.get(f"/staff/sales/{setup.sale.id}/holds", params={"q": "A-002"})

    assert response.status_code == 200
    assert "1 holds found" in response.text
    assert f'href="/staff/holds/{hold_ids[1]}"' in response.text
    assert f'href="/staff/holds/{hold_ids[0]}"' not in response.text


def test_search_page_ignores_non_ascii_page(
    http: httpx.Client, settings: Settings
) -> None:
    setup, _ = held_sale(settings, holds=1)
    log_in(http, "cashier", settings)
    path = f"/staff/sales/{setup.sale.id}/holds"

    # A superscript two is a digit to str.isdigit() but not to int().
    response = http.get(path, params={"page": "\u00b2"})

    assert response.status_code == 200
    assert "1 holds found" in response.text


def test_hold_page_escapes_buyer_name(http: httpx.Client, settings: Settings) -> None:
    setup, (hold_id,) = held_sale(settings)

    async def rename() -> None:
        async with stores(settings, max_size=1) as (pool, _):
            await pool.execute(
                "UPDATE registrants SET name = '<img src=x>' WHERE sale_id = $1",
                setup.sale.id,
            )

    run(rename())
    log_in(http, "cashier", settings)

    response = http.get(f"/staff/holds/{hold_id}")

    assert "<img src=x>" not in response.text
    assert "&lt;img src=x&gt;" in response.text


def test_cashier_cannot_manage(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    log_in(http, "cashier", settings)

    response = http.get(f"/staff/sales/{setup.sale.id}/manage")

    assert response.status_code == 403
    assert "Only a manager can manage a sale" in response.text


def test_upload_reports_bad_rows(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1, arm=False))
    log_in(http, "manager", settings)
    path = f"/staff/sales/{setup.sale.id}/manage"
    token = form_token(http, path)
    csv = (
        "label,zone,level,kind,price_yuan\n"
        "B-001,B,B1,standard,9000\n"
        "B-002,B,B1,spaceship,9000\n"
        "B-003,B,B1,standard,free\n"
    )

    response = http.post(
        f"/staff/sales/{setup.sale.id}/upload/spaces",
        data={"csrf_token": token},
        files={"file": ("spaces.csv", csv.encode(), "text/csv")},
    )
    page = http.get(path)

    assert response.status_code == 422
    rows = re.findall(r"<tr><td>(\d+)</td>", response.text)
    assert rows == ["3", "4"]
    assert "nothing of the file was imported" in response.text
    assert "1 spaces, 1 registrants" in page.text


def test_create_sale_form(http: httpx.Client, settings: Settings) -> None:
    log_in(http, "manager", settings)
    token = form_token(http, "/staff")

    response = http.post(
        "/staff/sales",
        data={
            "csrf_token": token,
            "name": "Form sale",
            "zones": "A, B",
            "opens_at": "2030-01-02T10:00",
            "closes_at": "2030-01-02T12:00",
            "utc_offset": "+08:00",
            "limit": "1",
            "payment_hours": "48",
        },
    )
    manage = http.get(response.headers["location"])

    assert response.status_code == 303
    assert re.fullmatch(
        r"/staff/sales/\d+/manage\?done=created", response.headers["location"]
    )
    assert "Manage: Form sale" in manage.text
    assert "2030-01-02 02:00:00 UTC" in manage.text


def test_board_counts_by_zone(http: httpx.Client, settings: Settings) -> None:
    setup, _ = held_sale(settings, holds=2)
    log_in(http, "cashier", settings)

    response = http.get(f"/staff/sales/{setup.sale.id}/board")

    assert response.status_code == 200
    assert '<td class="free">2</td>' in response.text
    assert '<td class="held">2</td>' in response.text
