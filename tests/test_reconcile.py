"""Reconciliation reports each way Redis and Postgres can disagree."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from app import database
from app.keys import SaleKeys
from app.persister import Persister
from app.reconcile import reconcile
from app.redis_store import RedisStore
from app.settings import Settings
from tests.support import make_sale

pytestmark = pytest.mark.anyio


async def test_reconcile_agreeing_and_disagreeing(settings: Settings) -> None:
    assert settings.database_url and settings.redis_url
    setup = await make_sale(settings, spaces=4, buyers=3)
    pool = await database.create_pool(settings.database_url)
    client = aioredis.Redis.from_url(settings.redis_url)
    store = RedisStore(client, 600)
    keys = SaleKeys.for_sale(setup.sale.id)
    buyers = [b.registration_no for b in setup.buyers]
    try:
        await store.grab(setup.sale.id, buyers[0], "a", ["A-001"])
        unrecorded = await reconcile(pool, client, setup.sale.id)
        await Persister(client, pool).drain_sale(setup.sale.id)
        agreed = await reconcile(pool, client, setup.sale.id)

        await client.hset(keys.holders, "A-002", "forged-1")
        await client.hdel(keys.holders, "A-001")
        await client.hset(keys.counts, buyers[2], 3)
        broken = await reconcile(pool, client, setup.sale.id)
    finally:
        await client.aclose()
        await pool.close()

    assert unrecorded.unrecorded_grants == 1
    assert not unrecorded.agrees
    assert agreed.agrees
    assert agreed.live_in_postgres == 1
    assert any("A-001" in d and "Redis shows it free" in d for d in broken.differences)
    assert any("A-002" in d and "forged-1" in d for d in broken.differences)
    assert any(buyers[2] in d and "counts 3" in d for d in broken.differences)
    assert len(broken.differences) == 3
