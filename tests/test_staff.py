"""Staff accounts and sessions over real HTTP: login, logout, throttling."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import pytest
import redis.asyncio as aioredis

from app import staff
from app.embedded import free_port
from app.errors import BadRequest, Conflict
from app.settings import Settings
from tests.office import PASSWORD, add_member, login, stores
from tests.support import run


def test_login_returns_role_and_cookie(http: httpx.Client, settings: Settings) -> None:
    member = run(add_member(settings, "cashier"))

    response = http.post(
        "/api/staff/session",
        json={"username": member.username, "password": PASSWORD},
    )

    assert response.status_code == 201
    assert response.json()["role"] == "cashier"
    assert "parking_staff" in response.cookies
    assert PASSWORD not in response.text
    me = http.get("/api/staff/me")
    assert me.status_code == 200
    assert me.json()["username"] == member.username


def test_login_wrong_password_rejected(http: httpx.Client, settings: Settings) -> None:
    member = run(add_member(settings, "cashier"))

    response = http.post(
        "/api/staff/session",
        json={"username": member.username, "password": "wrong password"},
    )

    assert response.status_code == 401
    assert response.json()["message"] == "The username or the password is wrong."


def test_login_unknown_user_same_answer(http: httpx.Client) -> None:
    response = http.post(
        "/api/staff/session", json={"username": "nobody-here", "password": "x" * 12}
    )

    assert response.status_code == 401
    assert response.json()["message"] == "The username or the password is wrong."


def test_login_missing_field_named(http: httpx.Client) -> None:
    response = http.post("/api/staff/session", json={"username": "someone"})

    assert response.status_code == 400
    assert response.json()["field"] == "password"


def test_login_throttled_after_failures(http: httpx.Client, settings: Settings) -> None:
    member = run(add_member(settings, "manager"))
    for _ in range(staff.MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS):
        wrong = http.post(
            "/api/staff/session",
            json={"username": member.username, "password": "wrong password"},
        )
        assert wrong.status_code == 401

    blocked = http.post(
        "/api/staff/session",
        json={"username": member.username, "password": PASSWORD},
    )

    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
    assert member.username in blocked.json()["message"]


def test_logout_ends_session(http: httpx.Client, settings: Settings) -> None:
    member = run(add_member(settings, "cashier"))
    headers = login(http, member)

    out = http.delete("/api/staff/session", headers=headers)
    after = http.get("/api/staff/me", headers=headers)

    assert out.status_code == 200
    assert after.status_code == 401
    assert after.json()["message"] == "The staff session has ended; log in again."


def test_create_staff_rejects_bad_fields(settings: Settings) -> None:
    async def attempt(name: str, role: str, password: str) -> None:
        async with stores(settings, max_size=1) as (pool, _):
            await staff.create_staff(pool, name, role, password)

    with pytest.raises(BadRequest, match="username"):
        run(attempt("Bad Name", "cashier", PASSWORD))
    with pytest.raises(BadRequest, match="role"):
        run(attempt("someone", "owner", PASSWORD))
    with pytest.raises(BadRequest, match="password"):
        run(attempt("someone", "cashier", "short"))


def test_create_staff_twice_conflicts(settings: Settings) -> None:
    member = run(add_member(settings, "cashier"))

    async def again() -> None:
        async with stores(settings, max_size=1) as (pool, _):
            await staff.create_staff(pool, member.username, "manager", PASSWORD)

    with pytest.raises(Conflict, match="already exists"):
        run(again())


def test_add_staff_command_reads_env(settings: Settings) -> None:
    assert settings.redis_url and settings.database_url
    name = f"cli-{uuid.uuid4().hex[:8]}"
    environ = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "PARKING_STAFF_PASSWORD": PASSWORD,
    }

    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "add-staff", name, "--role", "manager"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert done.returncode == 0, done.stderr
    assert f"created manager {name}" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


def test_throttle_fails_open_without_redis() -> None:
    async def attempt() -> None:
        # Nothing listens on this port, so every Redis call fails.
        dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
        throttle = staff.LoginThrottle(dead)
        try:
            await throttle.count_failure("someone", "127.0.0.1")
            await throttle.check("someone", "127.0.0.1")
        finally:
            await dead.aclose()

    run(attempt())


def test_stranger_cannot_lock_staff_out(http: httpx.Client, settings: Settings) -> None:
    member = run(add_member(settings, "cashier"))
    wrong = {"username": member.username, "password": "wrong password"}
    right = {"username": member.username, "password": PASSWORD}
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=str(http.base_url), transport=elsewhere) as stranger:
        limit = staff.MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS
        tries = [
            stranger.post("/api/staff/session", json=wrong).status_code
            for _ in range(limit + 1)
        ]

    response = http.post("/api/staff/session", json=right)

    assert tries == [401] * limit + [429]
    assert response.status_code == 201
