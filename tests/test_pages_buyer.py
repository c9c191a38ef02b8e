"""The buyer pages over real HTTP: rendering, escaping, my result, results."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import httpx

from app.hold_refs import HoldRefs
from app.settings import Settings
from tests.support import SaleSetup, make_sale, run


def execute(settings: Settings, query: str, *args: Any) -> None:
    async def go() -> None:
        assert settings.database_url
        connection = await asyncpg.connect(settings.database_url)
        try:
            await connection.execute(query, *args)
        finally:
            await connection.close()

    run(go())


def log_in(http: httpx.Client, setup: SaleSetup, index: int = 0) -> None:
    buyer = setup.buyers[index]
    response = http.post(
        f"/api/sales/{setup.sale.id}/session",
        json={
            "registration_no": buyer.registration_no,
            "access_code": buyer.access_code,
        },
    )
    assert response.status_code == 201, response.text


def grab(http: httpx.Client, setup: SaleSetup, label: str) -> dict[str, Any]:
    response = http.post(
        f"/api/sales/{setup.sale.id}/holds",
        json={"space": label},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_sale_page_shows_plan(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=1))

    response = http.get(f"/sales/{setup.sale.id}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "Zone A, level B1" in response.text
    assert 'data-label="A-003" data-position="2"' in response.text
    assert "&yen;10,000" in response.text
    assert 'data-logged-in="false"' in response.text


def test_sale_page_escapes_sale_name(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    execute(
        settings,
        "UPDATE sales SET name = $2 WHERE id = $1",
        setup.sale.id,
        '<script>alert("x")</script>',
    )

    response = http.get(f"/sales/{setup.sale.id}")

    assert response.status_code == 200
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert" in response.text


def test_sale_page_unknown_sale(http: httpx.Client) -> None:
    response = http.get("/sales/987654321")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Sale 987654321 does not exist." in response.text


def test_sale_page_knows_logged_in_buyer(
    http: httpx.Client, settings: Settings
) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=1))
    log_in(http, setup)

    response = http.get(f"/sales/{setup.sale.id}")

    assert 'data-logged-in="true"' in response.text
    assert f"Logged in as {setup.buyers[0].registration_no}." in response.text
    assert "You hold no space in this sale yet." in response.text


def test_my_result_needs_login(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))

    response = http.get(f"/sales/{setup.sale.id}/mine")

    assert response.status_code == 401
    assert "Log in to see your result." in response.text


def test_my_result_held_then_paid(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=1))
    log_in(http, setup)
    hold = grab(http, setup, "A-002")

    held = http.get(f"/sales/{setup.sale.id}/mine")
    execute(
        settings,
        "UPDATE holds SET status = 'paid', queue_no = 1, paid_at = now(), "
        "paid_fen = price_fen WHERE id = $1",
        hold["hold"],
    )
    paid = http.get(f"/sales/{setup.sale.id}/mine")

    assert held.status_code == 200
    assert "held for you, not paid yet" in held.text
    assert settings.sales_office_address in held.text
    assert "<svg" not in held.text
    assert paid.status_code == 200
    assert '<strong class="queue-no">001</strong>' in paid.text
    assert "<svg" in paid.text
    reference = paid.text.split('<code class="reference">')[1].split("</code>")[0]
    assert settings.secret_key
    assert HoldRefs(settings.secret_key).verify(reference) == hold["hold"]


def test_results_before_close(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))

    response = http.get(f"/sales/{setup.sale.id}/results")

    assert response.status_code == 200
    assert "published when the sale closes" in response.text
    assert "<table" not in response.text


def test_results_mask_winners(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=2))
    winner = setup.buyers[1].registration_no
    log_in(http, setup, 1)
    grab(http, setup, "A-002")
    execute(settings, "UPDATE sales SET state = 'closed' WHERE id = $1", setup.sale.id)

    response = http.get(f"/sales/{setup.sale.id}/results")

    assert response.status_code == 200
    assert "Spaces sold: 1, &yen;10,000 in all" in response.text
    assert '<th scope="row">A-002<br>' in response.text
    assert "A-001" not in response.text
    assert winner not in response.text
    assert winner[-4:] in response.text
    assert f"***{winner[-4:]}" in response.text
    assert re.search(r'class="audit-hash">[0-9a-f]{64}<', response.text)


def test_static_script_served(http: httpx.Client) -> None:
    response = http.get("/static/buyer.js")

    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]


def test_log_out_ends_session(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    log_in(http, setup)

    response = http.post(f"/sales/{setup.sale.id}/logout")
    page = http.get(f"/sales/{setup.sale.id}")

    assert response.status_code == 303
    assert response.headers["location"] == f"/sales/{setup.sale.id}"
    assert "parking_buyer" not in http.cookies
    assert 'data-logged-in="false"' in page.text


def test_log_out_other_origin(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    log_in(http, setup)

    response = http.post(
        f"/sales/{setup.sale.id}/logout", headers={"Origin": "http://other.invalid"}
    )
    page = http.get(f"/sales/{setup.sale.id}")

    assert response.status_code == 403
    assert 'data-logged-in="true"' in page.text
