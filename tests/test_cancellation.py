"""Cancellation on real servers: the space is freed, even after Redis fails."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from app.cancellation import cancel_hold
from app.embedded import free_port
from app.expiry import sweep_armed_sales
from app.keys import SaleKeys
from app.reconcile import reconcile
from app.redis_store import RedisStore
from app.settings import Settings
from tests.office import add_member, grab_spaces, stores
from tests.support import make_sale, run


def test_cancel_frees_space_for_others(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=2))
    sale_id = setup.sale.id
    manager = run(add_member(settings, "manager"))

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 1)

            cancelled = await cancel_hold(pool, store, holds[0], "typo", manager)

            assert cancelled.status == "cancelled"
            assert cancelled.end_reason == f"cancelled by {manager.username}: typo"
            other = setup.buyers[1].registration_no
            reply = await store.grab(sale_id, other, uuid.uuid4().hex, ["A-001"])
            assert reply.outcome == "granted"

    run(scenario())


def test_cancel_commits_when_redis_fails(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    manager = run(add_member(settings, "manager"))
    holders = SaleKeys.for_sale(setup.sale.id).holders

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 1)
            # Nothing listens on this port, so freeing the space fails.
            dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
            try:
                cancelled = await cancel_hold(
                    pool, RedisStore(dead, 60), holds[0], "typo", manager
                )
            finally:
                await dead.aclose()
            assert cancelled.status == "cancelled"
            assert await store.client.hget(holders, "A-001") == holds[0].encode()

            await sweep_armed_sales(pool, store)

            assert await store.client.hget(holders, "A-001") is None
            report = await reconcile(pool, store.client, setup.sale.id)
            assert report.differences == []

    run(scenario())


class FailingReads:
    """A pool whose transactions work but whose later reads fail."""

    def __init__(self, pool: object) -> None:
        self.pool = pool

    def acquire(self) -> object:
        return self.pool.acquire()  # type: ignore[attr-defined]

    async def fetch(self, *args: object) -> object:
        raise OSError("connection reset")

    async def fetchrow(self, *args: object) -> object:
        raise OSError("connection reset")


def test_cancel_commits_when_postgres_fails_after(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    manager = run(add_member(settings, "manager"))
    holders = SaleKeys.for_sale(setup.sale.id).holders

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 1)

            cancelled = await cancel_hold(
                FailingReads(pool),  # type: ignore[arg-type]
                store,
                holds[0],
                "typo",
                manager,
            )

            assert cancelled.status == "cancelled"
            status = await pool.fetchval(
                "SELECT status FROM holds WHERE id = $1", holds[0]
            )
            assert status == "cancelled"
            # Redis still gives the space to the hold until the sweep runs.
            assert await store.client.hget(holders, "A-001") == holds[0].encode()
            await sweep_armed_sales(pool, store)
            assert await store.client.hget(holders, "A-001") is None

    run(scenario())
