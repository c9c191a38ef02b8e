"""Arming: copy a sale from Postgres into Redis for the launch.

Arming writes the sale's meta, spaces, registrant limits and, for a sale that
already has holds, who holds what, in one MULTI/EXEC transaction, so grabs
see either the old loading or the new one. The grant stream is kept: entries
not yet in Postgres must survive a re-arm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError, WatchError

from app.errors import Conflict
from app.keys import ARMED_SALES, SaleKeys
from app.sales import Sale, get_sale
from app.types import DbPool

logger = logging.getLogger(__name__)

GROUP = "persister"
_CHUNK = 5000
# Tries of the WATCHed transaction before giving up on a sale that keeps
# changing under it.
_ATTEMPTS = 10


def _milliseconds(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


async def ensure_group(client: aioredis.Redis, keys: SaleKeys) -> None:
    """Create the persister's consumer group on the grant stream if missing."""
    try:
        await client.xgroup_create(keys.grants, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclasses.dataclass(frozen=True, slots=True)
class _Loaded:
    """The rows arming reads from Postgres."""

    spaces: list[asyncpg.Record]
    registrants: list[asyncpg.Record]
    live: list[asyncpg.Record]
    last_seq: int


async def _read_sale(pool: DbPool, sale_id: int) -> _Loaded:
    async with pool.acquire() as connection:
        spaces = await connection.fetch(
            "SELECT label, position FROM spaces WHERE sale_id = $1", sale_id
        )
        registrants = await connection.fetch(
            "SELECT registration_no, buyer_limit FROM registrants WHERE sale_id = $1",
            sale_id,
        )
        live = await connection.fetch(
            """
            SELECT h.id, s.label, s.position, r.registration_no
            FROM holds h
            JOIN spaces s ON s.id = h.space_id
            JOIN registrants r ON r.id = h.registrant_id
            WHERE h.sale_id = $1 AND h.status IN ('held', 'paid', 'signed')
            """,
            sale_id,
        )
        last_seq = await connection.fetchval(
            """
            SELECT coalesce(max(split_part(id, '-', 2)::bigint), 0)
            FROM holds WHERE sale_id = $1
            """,
            sale_id,
        )
    if not spaces:
        raise Conflict(f"Sale {sale_id} has no spaces; import them before arming.")
    if not registrants:
        raise Conflict(f"Sale {sale_id} has no registrants; import them before arming.")
    return _Loaded(list(spaces), list(registrants), list(live), int(last_seq))


def _queue_writes(
    pipe: Pipeline,
    keys: SaleKeys,
    sale: Sale,
    loaded: _Loaded,
    state: str,
    generation: int,
    seq: int,
) -> None:
    """Queue the commands that replace the sale's keys in one transaction."""
    counts: dict[str, int] = {}
    for row in loaded.live:
        counts[row["registration_no"]] = counts.get(row["registration_no"], 0) + 1
    pipe.delete(*keys.all_data())
    pipe.hset(
        keys.meta,
        mapping={
            "state": state,
            "opens_ms": _milliseconds(sale.opens_at),
            "closes_ms": _milliseconds(sale.closes_at),
            "payment_ms": int(sale.payment_window.total_seconds() * 1000),
            "generation": generation,
            "seq": seq,
            "version": 0,
        },
    )
    spaces = loaded.spaces
    for start in range(0, len(spaces), _CHUNK):
        chunk = spaces[start : start + _CHUNK]
        pipe.hset(keys.spaces, mapping={r["label"]: r["position"] for r in chunk})
    # Size the bitmap once, so its length matches the number of spaces.
    pipe.setbit(keys.taken, max(r["position"] for r in spaces), 0)
    registrants = loaded.registrants
    for start in range(0, len(registrants), _CHUNK):
        chunk = registrants[start : start + _CHUNK]
        pipe.hset(
            keys.limits,
            mapping={r["registration_no"]: r["buyer_limit"] for r in chunk},
        )
    for row in loaded.live:
        pipe.hset(keys.holders, row["label"], row["id"])
        pipe.setbit(keys.taken, row["position"], 1)
    if counts:
        pipe.hset(keys.counts, mapping={k: v for k, v in counts.items()})


async def arm_sale(
    pool: DbPool,
    client: aioredis.Redis,
    sale_id: int,
    force: bool = False,
    drain: Callable[[int], Awaitable[object]] | None = None,
) -> Sale:
    """Load the sale into Redis and mark it armed; return the armed sale.

    Raises `Conflict` for a closed sale, for a sale without spaces or
    registrants, and for re-arming a sale that has opened, unless `force`.

    A re-arm pauses grabbing, lets `drain` record the grants still in the
    stream, reads the live holds from Postgres and writes them to Redis in
    one transaction. The transaction WATCHes the grant stream and the
    holders, so a grant or a release that slips in after the drain (a
    waiting-list offer, a cancellation) makes it start over instead of
    losing or doubling that hold. If arming fails, the sale's earlier state
    in Redis is restored.
    """
    # One arming of a sale at a time: two at once (a double click, two
    # managers) would both write the same new generation.
    async with pool.acquire() as lock:
        await lock.execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))", f"arm-{sale_id}"
        )
        try:
            return await _arm_locked(pool, client, sale_id, force, drain)
        finally:
            await lock.execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))", f"arm-{sale_id}"
            )


async def _arm_locked(
    pool: DbPool,
    client: aioredis.Redis,
    sale_id: int,
    force: bool,
    drain: Callable[[int], Awaitable[object]] | None,
) -> Sale:
    sale = await get_sale(pool, sale_id)
    keys = SaleKeys.for_sale(sale_id)
    now = dt.datetime.now(dt.UTC)
    if sale.state == "closed":
        raise Conflict(f"Sale {sale_id} is closed and cannot be armed again.")
    if sale.state != "draft" and now >= sale.opens_at and not force:
        raise Conflict(
            f"Sale {sale_id} opened at {sale.opens_at.isoformat()}; re-arming an "
            "open sale needs --force."
        )

    previous, redis_generation = await client.hmget(keys.meta, "state", "generation")
    state = "paused" if sale.state == "paused" else "armed"
    # Above both stores' numbers: an arming that wrote Redis but failed
    # before Postgres must not leave its number to be used again.
    generation = max(sale.generation, int(redis_generation or 0)) + 1
    try:
        if previous is not None:
            await client.hset(keys.meta, "state", "paused")
        await _load_into_redis(pool, client, sale, keys, state, generation, drain)
    except BaseException:
        if previous is not None:
            # Best effort: a failure here must not hide the original error.
            with contextlib.suppress(RedisError):
                await client.hset(keys.meta, "state", previous)
        raise
    await ensure_group(client, keys)
    await client.sadd(ARMED_SALES, sale_id)

    updated = await pool.fetchrow(
        """
        UPDATE sales SET state = $2, generation = $3 WHERE id = $1 RETURNING *
        """,
        sale_id,
        state,
        generation,
    )
    assert updated is not None
    logger.info("sale_armed", extra={"sale_id": sale_id, "generation": generation})
    return Sale.from_record(updated)


async def _load_into_redis(
    pool: DbPool,
    client: aioredis.Redis,
    sale: Sale,
    keys: SaleKeys,
    state: str,
    generation: int,
    drain: Callable[[int], Awaitable[object]] | None,
) -> None:
    async with client.pipeline(transaction=True) as pipe:
        for attempt in range(1, _ATTEMPTS + 1):
            await pipe.watch(keys.grants, keys.holders, keys.counts)
            if drain is not None:
                await drain(sale.id)
            loaded = await _read_sale(pool, sale.id)
            old_seq = int(await pipe.hget(keys.meta, "seq") or 0)
            pipe.multi()  # type: ignore[no-untyped-call]
            seq = max(old_seq, loaded.last_seq)
            _queue_writes(pipe, keys, sale, loaded, state, generation, seq)
            try:
                await pipe.execute()
            except WatchError:
                logger.info(
                    "arming_retried", extra={"sale_id": sale.id, "attempt": attempt}
                )
                continue
            logger.info(
                "sale_loaded",
                extra={
                    "sale_id": sale.id,
                    "spaces": len(loaded.spaces),
                    "registrants": len(loaded.registrants),
                    "live_holds": len(loaded.live),
                },
            )
            return
    raise Conflict(f"Sale {sale.id} kept changing while it was being armed; try again.")
