"""The routed grab handler answers exactly as the fast path does."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app.settings import Settings
from tests.conftest import LiveServer
from tests.support import SaleSetup, make_sale, run, settings_for


def answers(server: LiveServer, setup: SaleSetup) -> list[tuple[int, str | None]]:
    with httpx.Client(base_url=server.url) as http:
        buyer = setup.buyers[0]
        token = http.post(
            f"/api/sales/{setup.sale.id}/session",
            json={
                "registration_no": buyer.registration_no,
                "access_code": buyer.access_code,
            },
        ).json()["token"]
        # Only the headers below authenticate, not the cookie the login set.
        http.cookies.clear()
        auth = {"Authorization": f"Bearer {token}"}
        url = f"/api/sales/{setup.sale.id}/holds"
        requests = [
            ({**auth, "Idempotency-Key": "one"}, b'{"space": "A-001"}'),
            ({**auth, "Idempotency-Key": "one"}, b'{"space": "A-001"}'),
            ({**auth, "Idempotency-Key": "two"}, b'{"space": "A-002"}'),
            ({**auth, "Idempotency-Key": "three"}, b'{"space": "Z-1"}'),
            ({**auth, "Idempotency-Key": "four"}, b"{bad json"),
            ({**auth}, b'{"space": "A-001"}'),
            ({"Idempotency-Key": "five"}, b'{"space": "A-001"}'),
            ({**auth, "Idempotency-Key": uuid.uuid4().hex}, b"x" * 10_000),
        ]
        results = []
        for headers, body in requests:
            response = http.post(url, content=body, headers=headers)
            results.append((response.status_code, response.json().get("error")))
            assert "x-request-id" in response.headers
        cookie = http.post(
            url,
            content=b'{"space": "A-003"}',
            headers={"Idempotency-Key": "six", "Cookie": f"parking_buyer={token}"},
        )
        results.append((cookie.status_code, cookie.json().get("error")))
    return results


@pytest.mark.parametrize("fast", ["true", "false"])
def test_grab_paths_agree(settings: Settings, fast: str) -> None:
    assert settings.redis_url and settings.database_url
    configured = settings_for(
        settings.redis_url, settings.database_url, PARKING_GRAB_FAST_PATH=fast
    )
    setup = run(make_sale(configured, spaces=3, buyers=1))
    server = LiveServer(configured)
    server.start()
    try:
        results = answers(server, setup)
    finally:
        server.stop()

    assert results == [
        (201, None),
        (201, None),
        (409, "limit_reached"),
        (404, "unknown_space"),
        (400, "bad_request"),
        (400, "bad_request"),
        (401, "unauthorized"),
        (413, "payload_too_large"),
        (409, "limit_reached"),
    ]
