"""The persister on its own: one failing sale does not stop the others."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from app import database
from app.keys import ARMED_SALES, SaleKeys
from app.persister import Persister
from app.redis_store import RedisStore
from app.settings import Settings
from tests.support import make_sale

pytestmark = pytest.mark.anyio


async def test_failing_sale_does_not_block_others(settings: Settings) -> None:
    assert settings.database_url and settings.redis_url
    broken = await make_sale(settings, spaces=2, buyers=2)
    healthy = await make_sale(settings, spaces=2, buyers=2)
    pool = await database.create_pool(settings.database_url)
    client = aioredis.Redis.from_url(settings.redis_url)
    store = RedisStore(client, 600)
    persister = Persister(client, pool, claim_idle_ms=0)
    try:
        won = await store.grab(
            broken.sale.id, broken.buyers[0].registration_no, "a", ["A-001"]
        )
        await persister.drain_sale(broken.sale.id)
        # A second grant of the same space, which Postgres must refuse.
        await client.xadd(
            SaleKeys.for_sale(broken.sale.id).grants,
            {
                "hold": f"{broken.sale.id}-99",
                "label": "A-001",
                "buyer": broken.buyers[1].registration_no,
                "granted_ms": 1_800_000_000_000,
                "deadline_ms": 1_800_100_000_000,
                "generation": 1,
            },
        )
        other = await store.grab(
            healthy.sale.id, healthy.buyers[0].registration_no, "b", ["A-002"]
        )

        await persister.drain_all()
        recorded = await pool.fetch(
            "SELECT id FROM holds WHERE sale_id = ANY($1::bigint[])",
            [broken.sale.id, healthy.sale.id],
        )
    finally:
        # Keep the planted grant away from the persisters of later tests.
        await client.srem(ARMED_SALES, broken.sale.id)
        await client.aclose()
        await pool.close()

    assert {row["id"] for row in recorded} == {won.hold_id, other.hold_id}
