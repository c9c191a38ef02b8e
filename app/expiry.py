"""Expiry of holds that were not paid by their deadline.

One statement picks overdue held holds with `FOR UPDATE SKIP LOCKED`, marks
them expired only if they are still held, and writes their audit entries,
so any number of concurrent runs expire each hold once. A hold that a
cashier is paying at that moment is locked and skipped: if the payment
fails, the next run expires it. After the commit each space is freed
(released or offered to the waiting list), and a sweep frees any space that
an earlier run could not free because Redis failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from redis.exceptions import RedisError

from app.keys import ARMED_SALES
from app.persister import STORE_ERRORS, raise_if_cancelling
from app.redis_store import RedisStore
from app.releases import ended_holds, free_space, sweep_sale
from app.types import DbPool
from app.waiting_list import EndedHold, lapse_offers

logger = logging.getLogger(__name__)

_EXPIRE = """
    WITH due AS (
        SELECT id FROM holds
        WHERE status = 'held' AND deadline <= coalesce($1, clock_timestamp())
        ORDER BY deadline, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ), expired AS (
        UPDATE holds h
        SET status = 'expired', ended_at = clock_timestamp(),
            end_reason = 'not paid by the deadline'
        FROM due
        WHERE h.id = due.id AND h.status = 'held'
        RETURNING h.id, h.sale_id, h.deadline, h.ended_at
    ), audited AS (
        INSERT INTO audit_log (sale_id, actor, action, subject, before, after)
        SELECT e.sale_id, 'expiry', 'hold_expired', e.id,
               jsonb_build_object('status', 'held', 'deadline', e.deadline),
               jsonb_build_object('status', 'expired', 'ended_at', e.ended_at,
                                  'end_reason', 'not paid by the deadline')
        FROM expired e
        ORDER BY e.sale_id, e.deadline, e.id
    )
    SELECT id FROM expired
"""


async def expire_due(
    pool: DbPool, now: dt.datetime | None = None, batch_size: int = 500
) -> list[str]:
    """Expire up to `batch_size` overdue holds in Postgres; return their ids.

    `now` replaces the database clock as the cut-off (for tests and for
    catching up); by default a hold is overdue once its deadline has passed.
    """
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(_EXPIRE, now, batch_size)
        hold_ids = [row["id"] for row in rows]
        if hold_ids:
            await lapse_offers(connection, hold_ids)
    return hold_ids


async def expire_overdue(
    pool: DbPool,
    store: RedisStore,
    now: dt.datetime | None = None,
    batch_size: int = 500,
) -> list[EndedHold]:
    """Expire every overdue hold and free its space; return the holds expired.

    Raises Postgres errors. A Redis error while freeing a space is logged
    and left to the next run's sweep, because the expiry itself is committed.
    """
    expired: list[EndedHold] = []
    while True:
        hold_ids = await expire_due(pool, now, batch_size)
        if not hold_ids:
            break
        ended = await ended_holds(pool, hold_ids)
        expired.extend(ended)
        for hold in ended:
            try:
                await free_space(pool, store, hold)
            except RedisError as exc:
                logger.warning(
                    "space_not_freed",
                    extra={
                        "hold": hold.id,
                        "sale_id": hold.sale_id,
                        "error": repr(exc),
                    },
                )
        if len(hold_ids) < batch_size:
            break
    if expired:
        logger.info("holds_expired", extra={"count": len(expired)})
    return expired


async def sweep_armed_sales(pool: DbPool, store: RedisStore) -> int:
    """Free the spaces Redis still gives to ended holds, in every armed sale."""
    freed = 0
    for member in await store.client.smembers(ARMED_SALES):
        freed += await sweep_sale(pool, store, int(member))
    return freed


async def run_periodically(pool: DbPool, store: RedisStore, interval: float) -> None:
    """Expire and sweep every `interval` seconds until cancelled."""
    logger.info("expirer_started", extra={"interval_s": interval})
    while True:
        try:
            await expire_overdue(pool, store)
            await sweep_armed_sales(pool, store)
        except STORE_ERRORS as exc:
            raise_if_cancelling(exc)
            logger.warning("expirer_retrying", extra={"error": repr(exc)})
        await asyncio.sleep(interval)
