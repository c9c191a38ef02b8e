"""Freeing the space of a hold that has ended (cancelled or expired).

Postgres decides that a hold ends; only after that commits does Redis learn
it, through the `release` script (back on the open market) or the `offer`
script (to the waiting list, when that is the sale's policy). Both check that the
ended hold still holds the space, so freeing one space twice, or from two
processes at once, changes Redis once. When Redis fails after the commit,
`sweep_sale` finds the space still held by the ended hold on its next run.
"""

from __future__ import annotations

import logging

from app.keys import SaleKeys
from app.redis_store import RedisStore
from app.types import DbExecutor, DbPool
from app.waiting_list import EndedHold, link_recorded_offers, offer_next

logger = logging.getLogger(__name__)


async def free_space(pool: DbPool, store: RedisStore, ended: EndedHold) -> str:
    """Offer or release the space; return "offered", "released" or "not_held".

    "not_held" means Redis no longer has this hold on the space (already
    freed, or the sale is not loaded in Redis). Raises Redis and Postgres
    errors; a later sweep retries.
    """
    policy = await pool.fetchrow(
        "SELECT released_to, offer_window FROM sales WHERE id = $1", ended.sale_id
    )
    if policy is not None and policy["released_to"] == "waiting_list":
        offered = await offer_next(pool, store, ended, policy["offer_window"])
        if offered == "not_holder":
            return "not_held"
        if offered is not None:
            return "offered"
    released = await store.release(
        ended.sale_id, ended.label, ended.id, ended.registration_no
    )
    if released:
        logger.info(
            "space_released",
            extra={"sale_id": ended.sale_id, "hold": ended.id, "space": ended.label},
        )
    return "released" if released else "not_held"


async def ended_holds(db: DbExecutor, hold_ids: list[str]) -> list[EndedHold]:
    """Return those of the given holds that have ended, as `EndedHold`s."""
    rows = await db.fetch(
        """
        SELECT h.id, h.sale_id, s.label, s.zone, s.kind, r.registration_no
        FROM holds h
        JOIN spaces s ON s.id = h.space_id
        JOIN registrants r ON r.id = h.registrant_id
        WHERE h.id = ANY($1::text[]) AND h.status IN ('cancelled', 'expired')
        ORDER BY h.ended_at, h.id
        """,
        hold_ids,
    )
    return [
        EndedHold(
            row["id"],
            row["sale_id"],
            row["label"],
            row["zone"],
            row["kind"],
            row["registration_no"],
        )
        for row in rows
    ]


async def sweep_sale(pool: DbPool, store: RedisStore, sale_id: int) -> int:
    """Free every space Redis still gives to an ended hold; return how many."""
    await link_recorded_offers(pool, sale_id)
    holders = await store.client.hgetall(SaleKeys.for_sale(sale_id).holders)
    hold_ids = [
        value.decode() if isinstance(value, bytes) else str(value)
        for value in holders.values()
    ]
    freed = 0
    for ended in await ended_holds(pool, [h for h in hold_ids if h]):
        if await free_space(pool, store, ended) != "not_held":
            freed += 1
    return freed
