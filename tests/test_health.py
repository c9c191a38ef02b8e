"""Health endpoints."""

from __future__ import annotations

import httpx


def test_live_needs_no_store(http: httpx.Client) -> None:
    response = http.get("/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_both_stores(http: httpx.Client) -> None:
    response = http.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
