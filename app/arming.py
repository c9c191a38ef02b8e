"""Arming: copy a sale from Postgres into Redis for the launch.

Arming writes the sale's meta, spaces, registrant limits and, for a sale that
already has holds, who holds what, in one MULTI/EXEC transaction, so grabs
see either the old loading or the new one. The grant stream is kept: entries
not yet in Postgres must survive a re-arm.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from app.errors import Conflict
from app.keys import ARMED_SALES, SaleKeys
from app.sales import Sale, get_sale
from app.types import DbPool

logger = logging.getLogger(__name__)

GROUP = "persister"
_CHUNK = 5000


def _milliseconds(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


async def ensure_group(client: aioredis.Redis, keys: SaleKeys) -> None:
    """Create the persister's consumer group on the grant stream if missing."""
    try:
        await client.xgroup_create(keys.grants, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


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
    A forced re-arm pauses grabbing, lets `drain` record pending grants, and
    then loads the holds from Postgres, so no grant is lost or doubled.
    """
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

    if sale.state != "draft" and await client.exists(keys.meta):
        # Stop grabs first so no grant slips in between reading and loading.
        await client.hset(keys.meta, "state", "paused")
        if drain is not None:
            await drain(sale_id)

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

    old_seq = int(await client.hget(keys.meta, "seq") or 0)
    generation = sale.generation + 1
    state = "paused" if sale.state == "paused" else "armed"
    counts: dict[str, int] = {}
    for row in live:
        counts[row["registration_no"]] = counts.get(row["registration_no"], 0) + 1

    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(*keys.all_data())
        pipe.hset(
            keys.meta,
            mapping={
                "state": state,
                "opens_ms": _milliseconds(sale.opens_at),
                "closes_ms": _milliseconds(sale.closes_at),
                "payment_ms": int(sale.payment_window.total_seconds() * 1000),
                "generation": generation,
                "seq": max(old_seq, int(last_seq)),
                "version": 0,
            },
        )
        for start in range(0, len(spaces), _CHUNK):
            chunk = spaces[start : start + _CHUNK]
            pipe.hset(keys.spaces, mapping={r["label"]: r["position"] for r in chunk})
        # Size the bitmap once, so its length matches the number of spaces.
        pipe.setbit(keys.taken, max(r["position"] for r in spaces), 0)
        for start in range(0, len(registrants), _CHUNK):
            chunk = registrants[start : start + _CHUNK]
            pipe.hset(
                keys.limits,
                mapping={r["registration_no"]: r["buyer_limit"] for r in chunk},
            )
        for row in live:
            pipe.hset(keys.holders, row["label"], row["id"])
            pipe.setbit(keys.taken, row["position"], 1)
        if counts:
            pipe.hset(keys.counts, mapping={k: v for k, v in counts.items()})
        await pipe.execute()
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
    logger.info(
        "sale_armed",
        extra={
            "sale_id": sale_id,
            "generation": generation,
            "spaces": len(spaces),
            "registrants": len(registrants),
            "live_holds": len(live),
        },
    )
    return Sale.from_record(updated)
