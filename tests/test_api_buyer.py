"""The buyer API over real HTTP: status codes, validation, privacy."""

from __future__ import annotations

import uuid

import httpx

from app.settings import Settings
from tests.support import SaleSetup, make_sale, run


def login(http: httpx.Client, setup: SaleSetup, index: int = 0) -> dict[str, str]:
    buyer = setup.buyers[index]
    response = http.post(
        f"/api/sales/{setup.sale.id}/session",
        json={
            "registration_no": buyer.registration_no,
            "access_code": buyer.access_code,
        },
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def grab(
    http: httpx.Client,
    setup: SaleSetup,
    headers: dict[str, str],
    body: object,
    key: str | None = None,
) -> httpx.Response:
    return http.post(
        f"/api/sales/{setup.sale.id}/holds",
        json=body,
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


def test_grab_wins_then_taken(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=2))
    first = login(http, setup, 0)
    second = login(http, setup, 1)

    won = grab(http, setup, first, {"space": "A-001"})
    lost = grab(http, setup, second, {"space": "A-001"})

    assert won.status_code == 201
    assert won.json()["space"] == "A-001"
    assert won.json()["status"] == "held"
    assert lost.status_code == 409
    assert lost.json()["error"] == "space_taken"
