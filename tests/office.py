"""Helpers for the sales-office tests: staff accounts, holds, store handles."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator

import httpx
import redis.asyncio as aioredis

from app import database, staff
from app.holds import Grant, record_grants
from app.persister import Persister
from app.redis_store import RedisStore
from app.settings import Settings
from app.types import DbPool
from tests.support import SaleSetup

_staff_numbers = itertools.count(1)
PASSWORD = "correct horse battery"


@contextlib.asynccontextmanager
async def stores(
    settings: Settings, max_size: int = 10
) -> AsyncIterator[tuple[DbPool, RedisStore]]:
    """Open a Postgres pool and a Redis store on the test servers."""
    assert settings.database_url and settings.redis_url
    pool = await database.create_pool(settings.database_url, max_size=max_size)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        yield pool, RedisStore(client, settings.idempotency_ttl_seconds)
    finally:
        await client.aclose()
        await pool.close()


async def add_member(settings: Settings, role: str) -> staff.StaffMember:
    """Create a staff account with a fresh name and the password `PASSWORD`."""
    async with stores(settings, max_size=1) as (pool, _):
        name = f"{role}{next(_staff_numbers)}-{uuid.uuid4().hex[:6]}"
        return await staff.create_staff(pool, name, role, PASSWORD, actor="test")


def login(http: httpx.Client, member: staff.StaffMember) -> dict[str, str]:
    """Log the member in over HTTP; return the bearer header."""
    response = http.post(
        "/api/staff/session",
        json={"username": member.username, "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def grab_spaces(
    pool: DbPool, store: RedisStore, setup: SaleSetup, count: int
) -> list[str]:
    """Let buyer i grab space i for the first `count` buyers; return hold ids.

    Each grant goes through the grab script and is recorded as the winning
    request would record it, so the grant stream has nothing left pending.
    """
    sale_id = setup.sale.id
    hold_ids = []
    for index in range(count):
        buyer = setup.buyers[index].registration_no
        reply = await store.grab(
            sale_id, buyer, uuid.uuid4().hex, [setup.labels[index]]
        )
        assert reply.outcome == "granted", reply
        grant = Grant(
            reply.hold_id,
            sale_id,
            reply.label,
            buyer,
            reply.granted_ms,
            reply.deadline_ms,
        )
        assert await record_grants(pool, sale_id, [grant]) == {reply.hold_id}
        hold_ids.append(reply.hold_id)
    # Acknowledge the grants in the stream, as the persister would.
    await Persister(store.client, pool, claim_idle_ms=0).drain_sale(sale_id)
    return hold_ids


async def make_overdue(pool: DbPool, hold_ids: list[str]) -> None:
    """Move the holds' payment deadline one minute into the past."""
    await pool.execute(
        """
        UPDATE holds SET deadline = clock_timestamp() - interval '1 minute'
        WHERE id = ANY($1::text[])
        """,
        hold_ids,
    )


async def hold_row(pool: DbPool, hold_id: str) -> dict[str, object]:
    row = await pool.fetchrow("SELECT * FROM holds WHERE id = $1", hold_id)
    assert row is not None
    return dict(row)
