"""Health endpoints."""

from __future__ import annotations

import httpx

from app.settings import Settings
from tests.support import make_sale, run


def test_live_needs_no_store(http: httpx.Client) -> None:
    response = http.get("/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_both_stores(http: httpx.Client) -> None:
    response = http.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics_count_grabs(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=2))
    for index in range(2):
        buyer = setup.buyers[index]
        token = http.post(
            f"/api/sales/{setup.sale.id}/session",
            json={
                "registration_no": buyer.registration_no,
                "access_code": buyer.access_code,
            },
        ).json()["token"]
        http.post(
            f"/api/sales/{setup.sale.id}/holds",
            json={"space": "A-001"},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "m"},
        )

    text = http.get("/metrics").text

    assert 'parking_grab_outcomes_total{outcome="granted"}' in text
    assert 'parking_grab_outcomes_total{outcome="space_taken"}' in text
    assert 'parking_request_duration_seconds_count{endpoint="grab"}' in text
    assert 'parking_request_duration_seconds_count{endpoint="create_session"}' in text
    assert f'parking_holds{{sale="{setup.sale.id}",status="held"}} 1.0' in text
    assert f'parking_persister_lag_grants{{sale="{setup.sale.id}"}}' in text
