"""The application's error mapping."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.web import (
    STORE_UNAVAILABLE,
    RequestIdMiddleware,
    on_data_error,
    on_store_unavailable,
    on_unexpected_error,
)


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


async def database_gone(request: Request) -> Response:
    raise asyncpg.CannotConnectNowError("the database system is shutting down")


pytestmark = pytest.mark.anyio


def client() -> httpx.AsyncClient:
    app = Starlette(
        routes=[Route("/broken", broken), Route("/gone", database_gone)],
        exception_handlers={
            Exception: on_unexpected_error,
            **{error: on_store_unavailable for error in STORE_UNAVAILABLE},
        },
    )
    app.add_middleware(RequestIdMiddleware)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_unexpected_error_names_request_id() -> None:
    async with client() as http:
        response = await http.get("/broken")

    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "None" not in response.json()["message"]
    assert "a bug" not in response.text


async def test_unreachable_store_is_503() -> None:
    async with client() as http:
        response = await http.get("/gone")

    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert response.headers["retry-after"] == "5"


async def test_value_postgres_refuses_is_400() -> None:
    async def too_big(request: Request) -> Response:
        raise asyncpg.NumericValueOutOfRangeError("value out of range for type bigint")

    app = Starlette(
        routes=[Route("/too-big", too_big)],
        exception_handlers={asyncpg.DataError: on_data_error},
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/too-big")

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
