"""Arming a sale into Redis, again and by force."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import redis.asyncio as aioredis

from app import arming, database
from app.errors import Conflict
from app.keys import SaleKeys
from app.persister import Persister
from app.redis_store import RedisStore
from app.sales import get_sale
from app.settings import Settings
from tests.support import make_sale, run

pytestmark = pytest.mark.anyio


async def connect(settings: Settings) -> tuple[database.DbPool, aioredis.Redis]:
    assert settings.database_url and settings.redis_url
    pool = await database.create_pool(settings.database_url)
    return pool, aioredis.Redis.from_url(settings.redis_url)


async def test_arm_loads_sale(settings: Settings) -> None:
    setup = await make_sale(settings, spaces=4, buyers=3, limits={1: 2})
    pool, client = await connect(settings)
    keys = SaleKeys.for_sale(setup.sale.id)
    try:
        meta = await client.hgetall(keys.meta)
        spaces = await client.hgetall(keys.spaces)
        limits = await client.hgetall(keys.limits)
        taken = await client.get(keys.taken)
    finally:
        await client.aclose()
        await pool.close()

    assert meta[b"state"] == b"armed"
    assert int(meta[b"opens_ms"]) == int(setup.sale.opens_at.timestamp() * 1000)
    assert int(meta[b"payment_ms"]) == 48 * 3600 * 1000
    assert spaces == {b"A-001": b"0", b"A-002": b"1", b"A-003": b"2", b"A-004": b"3"}
    assert limits[setup.buyers[1].registration_no.encode()] == b"2"
    assert taken == b"\x00"
    assert setup.sale.state == "armed"
    assert setup.sale.generation == 1


async def test_rearm_before_opening_is_safe(settings: Settings) -> None:
    setup = await make_sale(settings, opens_in=3600)
    pool, client = await connect(settings)
    try:
        again = await arming.arm_sale(pool, client, setup.sale.id)
        meta = await client.hgetall(SaleKeys.for_sale(setup.sale.id).meta)
    finally:
        await client.aclose()
        await pool.close()

    assert again.generation == 2
    assert meta[b"generation"] == b"2"
    assert meta[b"state"] == b"armed"


async def test_rearm_open_sale_needs_force(settings: Settings) -> None:
    setup = await make_sale(settings)
    pool, client = await connect(settings)
    try:
        with pytest.raises(Conflict, match="--force"):
            await arming.arm_sale(pool, client, setup.sale.id)
    finally:
        await client.aclose()
        await pool.close()


async def test_forced_rearm_keeps_holds(settings: Settings) -> None:
    setup = await make_sale(settings, spaces=3, buyers=3)
    pool, client = await connect(settings)
    store = RedisStore(client, 600)
    keys = SaleKeys.for_sale(setup.sale.id)
    try:
        first = await store.grab(
            setup.sale.id, setup.buyers[0].registration_no, "a", ["A-001"]
        )
        # Not yet recorded when the re-arm starts: the drain must record it.
        persister = Persister(client, pool, claim_idle_ms=0)
        await arming.arm_sale(
            pool, client, setup.sale.id, force=True, drain=persister.drain_sale
        )
        holder = await client.hget(keys.holders, "A-001")
        count = await client.hget(keys.counts, setup.buyers[0].registration_no)
        state = await client.hget(keys.meta, "state")
        repeat = await store.grab(
            setup.sale.id, setup.buyers[1].registration_no, "b", ["A-001"]
        )
        second = await store.grab(
            setup.sale.id, setup.buyers[1].registration_no, "c", ["A-002"]
        )
    finally:
        await client.aclose()
        await pool.close()

    assert holder == first.hold_id.encode()
    assert count == b"1"
    assert state == b"armed"
    assert repeat.outcome == "space_taken"
    assert second.outcome == "granted"
    assert second.hold_id != first.hold_id


async def test_arm_closed_sale_rejected(settings: Settings) -> None:
    setup = await make_sale(settings, arm=False)
    pool, client = await connect(settings)
    try:
        await pool.execute(
            "UPDATE sales SET state = 'closed' WHERE id = $1", setup.sale.id
        )
        with pytest.raises(Conflict, match="closed"):
            await arming.arm_sale(pool, client, setup.sale.id)
    finally:
        await client.aclose()
        await pool.close()


async def test_arm_without_spaces_rejected(settings: Settings) -> None:
    from app import sales

    pool, client = await connect(settings)
    try:
        now = dt.datetime.now(dt.UTC)
        sale = await sales.create_sale(
            pool, "Empty", ["A"], now, now + dt.timedelta(hours=1)
        )
        with pytest.raises(Conflict, match="no spaces"):
            await arming.arm_sale(pool, client, sale.id)
        exists = await client.exists(SaleKeys.for_sale(sale.id).meta)
    finally:
        await client.aclose()
        await pool.close()

    assert exists == 0


def test_migrate_twice_is_harmless(settings: Settings) -> None:
    async def migrate_again() -> list[str]:
        assert settings.database_url
        pool = await database.create_pool(settings.database_url)
        try:
            async with pool.acquire() as connection:
                return await database.migrate(connection)
        finally:
            await pool.close()

    assert run(migrate_again()) == []


async def test_forced_rearm_retries_after_late_grant(settings: Settings) -> None:
    """A grant that lands after the drain (as a waiting-list offer can) is kept."""
    from app.reconcile import reconcile

    setup = await make_sale(settings, spaces=3, buyers=3)
    pool, client = await connect(settings)
    store = RedisStore(client, 600)
    keys = SaleKeys.for_sale(setup.sale.id)
    persister = Persister(client, pool, claim_idle_ms=0)
    drains: list[int] = []
    late: list[str] = []

    async def drain_then_grant_once(sale_id: int) -> None:
        await persister.drain_sale(sale_id)
        drains.append(sale_id)
        if len(drains) == 1:
            # The sale is paused now; let one grant through behind its back.
            await client.hset(keys.meta, "state", "armed")
            reply = await store.grab(
                sale_id, setup.buyers[2].registration_no, "late", ["A-003"]
            )
            await client.hset(keys.meta, "state", "paused")
            late.append(reply.hold_id)

    try:
        await arming.arm_sale(
            pool, client, setup.sale.id, force=True, drain=drain_then_grant_once
        )
        holder = await client.hget(keys.holders, "A-003")
        state = await client.hget(keys.meta, "state")
        report = await reconcile(pool, client, setup.sale.id)
    finally:
        await client.aclose()
        await pool.close()

    assert len(drains) == 2
    assert holder == late[0].encode()
    assert state == b"armed"
    assert report.differences == []


async def test_failed_rearm_restores_state(settings: Settings) -> None:
    setup = await make_sale(settings, spaces=2, buyers=2)
    pool, client = await connect(settings)
    keys = SaleKeys.for_sale(setup.sale.id)

    async def failing_drain(sale_id: int) -> None:
        raise OSError("postgres went away")

    try:
        with pytest.raises(OSError):
            await arming.arm_sale(
                pool, client, setup.sale.id, force=True, drain=failing_drain
            )
        state = await client.hget(keys.meta, "state")
    finally:
        await client.aclose()
        await pool.close()

    assert state == b"armed"


async def test_concurrent_arms_get_their_own_generations(settings: Settings) -> None:
    setup = await make_sale(settings)
    pool, client = await connect(settings)
    try:
        armed = await asyncio.gather(
            *(
                arming.arm_sale(pool, client, setup.sale.id, force=True)
                for _ in range(3)
            )
        )
        in_redis = await client.hget(
            SaleKeys.for_sale(setup.sale.id).meta, "generation"
        )
        in_postgres = (await get_sale(pool, setup.sale.id)).generation
    finally:
        await client.aclose()
        await pool.close()

    assert sorted(sale.generation for sale in armed) == [2, 3, 4]
    assert int(in_redis or 0) == in_postgres == 4


async def test_arm_never_reuses_a_generation_left_in_redis(
    settings: Settings,
) -> None:
    setup = await make_sale(settings)
    pool, client = await connect(settings)
    keys = SaleKeys.for_sale(setup.sale.id)
    try:
        # As after an arming that wrote Redis and then failed before Postgres.
        await client.hset(keys.meta, "generation", 7)
        armed = await arming.arm_sale(pool, client, setup.sale.id, force=True)
        in_redis = await client.hget(keys.meta, "generation")
    finally:
        await client.aclose()
        await pool.close()

    assert armed.generation == 8
    assert in_redis == b"8"
