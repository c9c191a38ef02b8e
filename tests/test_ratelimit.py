"""The per-worker token bucket, and the 429 it produces over HTTP."""

from __future__ import annotations

import time

import httpx

from app.ratelimit import TokenBuckets
from app.settings import Settings
from tests.conftest import LiveServer
from tests.support import make_sale, run, settings_for


def test_bucket_allows_burst_then_rejects() -> None:
    buckets = TokenBuckets(rate_per_second=1.0, burst=3)

    allowed = [buckets.allow("a") for _ in range(4)]

    assert allowed == [True, True, True, False]
    assert buckets.allow("b")
    assert 0 < buckets.retry_after("a") <= 1.0


def test_bucket_refills_over_time() -> None:
    buckets = TokenBuckets(rate_per_second=50.0, burst=1)
    assert buckets.allow("a")
    assert not buckets.allow("a")

    time.sleep(0.05)

    assert buckets.allow("a")


def test_grab_rate_limited_over_http(settings: Settings) -> None:
    assert settings.redis_url and settings.database_url
    limited = settings_for(
        settings.redis_url,
        settings.database_url,
        PARKING_RATE_PER_SECOND="0.1",
        PARKING_RATE_BURST="2",
    )
    setup = run(make_sale(limited, spaces=5, buyers=1, limits={0: 5}))
    server = LiveServer(limited)
    server.start()
    try:
        with httpx.Client(base_url=server.url) as http:
            buyer = setup.buyers[0]
            token = http.post(
                f"/api/sales/{setup.sale.id}/session",
                json={
                    "registration_no": buyer.registration_no,
                    "access_code": buyer.access_code,
                },
            ).json()["token"]
            answers = [
                http.post(
                    f"/api/sales/{setup.sale.id}/holds",
                    json={"space": label},
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Idempotency-Key": label,
                    },
                )
                for label in setup.labels[:3]
            ]
            mine = http.get(
                f"/api/sales/{setup.sale.id}/holds/mine",
                headers={"Authorization": f"Bearer {token}"},
            ).json()["holds"]
    finally:
        server.stop()

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json()["error"] == "too_many_requests"
    assert int(answers[2].headers["retry-after"]) >= 1
    assert len(mine) == 2
