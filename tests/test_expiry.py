"""Expiry of unpaid holds: concurrent runs, Redis failing, and the service's
own periodic run."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from app.embedded import free_port
from app.expiry import expire_overdue, sweep_armed_sales
from app.keys import SaleKeys
from app.reconcile import reconcile
from app.redis_store import RedisStore
from app.settings import Settings
from tests.conftest import LiveServer
from tests.office import grab_spaces, make_overdue, stores
from tests.support import make_sale, run, settings_for


def test_concurrent_runs_expire_once(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=40, buyers=40))

    async def scenario() -> None:
        async with stores(settings) as (pool, store), stores(settings) as (other, _):
            holds = await grab_spaces(pool, store, setup, 40)
            await make_overdue(pool, holds)

            # Small batches make the two runs interleave many times.
            first, second = await asyncio.gather(
                expire_overdue(pool, store, batch_size=3),
                expire_overdue(other, store, batch_size=3),
            )

            ids = [h.id for h in first] + [h.id for h in second]
            mine = [hold for hold in ids if hold in holds]
            assert sorted(mine) == sorted(holds)
            audited = await pool.fetchval(
                """
                SELECT count(*) FROM audit_log
                WHERE sale_id = $1 AND action = 'hold_expired'
                """,
                setup.sale.id,
            )
            assert audited == 40
            report = await reconcile(pool, store.client, setup.sale.id)
            assert report.differences == []

    run(scenario())


def test_expiry_leaves_paid_holds(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=2))

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 2)
            await pool.execute(
                "UPDATE holds SET status = 'paid', queue_no = 1 WHERE id = $1",
                holds[0],
            )
            await make_overdue(pool, holds)

            expired = [h.id for h in await expire_overdue(pool, store)]

            assert holds[0] not in expired
            assert holds[1] in expired

    run(scenario())


def test_sweep_frees_space_after_redis_failure(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=2))
    label = setup.labels[0]

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 1)
            await make_overdue(pool, holds)
            # Nothing listens on this port, so freeing the space fails.
            dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
            try:
                expired = await expire_overdue(pool, RedisStore(dead, 60))
            finally:
                await dead.aclose()
            assert holds[0] in [h.id for h in expired]
            holders = SaleKeys.for_sale(setup.sale.id).holders
            assert await store.client.hget(holders, label) == holds[0].encode()

            freed = await sweep_armed_sales(pool, store)

            assert freed >= 1
            assert await store.client.hget(holders, label) is None
            report = await reconcile(pool, store.client, setup.sale.id)
            assert report.differences == []

    run(scenario())


def test_service_expires_periodically(settings: Settings) -> None:
    assert settings.redis_url and settings.database_url
    setup = run(make_sale(settings, spaces=1, buyers=1))
    server = LiveServer(
        settings_for(
            settings.redis_url,
            settings.database_url,
            PARKING_EXPIRE_INTERVAL_SECONDS="0.2",
            PARKING_RUN_EXPIRER="true",
        )
    )

    async def prepare() -> str:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 1)
            await make_overdue(pool, holds)
            return holds[0]

    async def status(hold: str) -> str:
        async with stores(settings, max_size=1) as (pool, _):
            return str(
                await pool.fetchval("SELECT status FROM holds WHERE id = $1", hold)
            )

    hold = run(prepare())
    server.start()
    try:
        deadline = time.monotonic() + 20
        while run(status(hold)) != "expired":
            assert time.monotonic() < deadline, "the service never expired the hold"
            time.sleep(0.1)
    finally:
        server.stop()
