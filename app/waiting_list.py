"""The waiting list: registrants who got nothing, and offers made to them.

A registrant joins for a zone, a kind, or both. When a hold ends in a sale
whose `released_to` is `waiting_list`, the space goes to the first matching
entry as a new hold with the sale's `offer_window` as its deadline. The
`offer` script makes that grant in Redis atomically: the ended hold must
still hold the space, and the registrant must be under their limit. The
script appends the grant to the grant stream, so the persister records it
even if this process dies before Postgres does. An offer that expires or is
cancelled marks its entry lapsed, and the space moves on to the next entry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from app import audit, scripts
from app.errors import BadRequest, Conflict, NotFound
from app.holds import Grant, record_grants
from app.keys import SaleKeys
from app.redis_store import RedisStore
from app.sales import KINDS, get_sale
from app.types import DbConnection, DbExecutor, DbPool

logger = logging.getLogger(__name__)

OFFER = scripts.Script("offer")


@dataclasses.dataclass(frozen=True, slots=True)
class EndedHold:
    """A hold that has just ended, with what is needed to free its space."""

    id: str
    sale_id: int
    label: str
    zone: str
    kind: str
    registration_no: str


async def join(
    pool: DbPool,
    sale_id: int,
    registration_no: str,
    zone: str | None,
    kind: str | None,
    actor: str,
) -> dict[str, Any]:
    """Put a registrant without a live hold in line; return the entry.

    Raises `BadRequest` for a bad zone or kind, `NotFound` for an unknown
    registrant and `Conflict` when they hold a space or are already in line.
    """
    sale = await get_sale(pool, sale_id)
    if zone is None and kind is None:
        raise BadRequest("Send a zone, a kind, or both.", field="zone")
    if zone is not None and zone not in sale.zones:
        raise BadRequest(
            f"zone {zone!r} is not a zone of this sale ({', '.join(sale.zones)}).",
            field="zone",
        )
    if kind is not None and kind not in KINDS:
        raise BadRequest(
            f"kind must be one of {', '.join(KINDS)}, got {kind!r}.", field="kind"
        )
    async with pool.acquire() as connection, connection.transaction():
        registrant = await connection.fetchrow(
            """
            SELECT r.id,
                   EXISTS (SELECT 1 FROM holds h WHERE h.registrant_id = r.id
                           AND h.status IN ('held', 'paid', 'signed')) AS has_hold,
                   EXISTS (SELECT 1 FROM waiting_list w WHERE w.registrant_id = r.id
                           AND w.status IN ('waiting', 'offered')) AS in_line
            FROM registrants r
            WHERE r.sale_id = $1 AND r.registration_no = $2
            FOR UPDATE OF r
            """,
            sale_id,
            registration_no,
        )
        if registrant is None:
            raise NotFound(
                f"{registration_no!r} is not a registrant of sale {sale_id}.",
                field="registration_no",
            )
        if registrant["has_hold"]:
            raise Conflict(
                f"{registration_no} already holds a space in this sale; only "
                "registrants who got nothing can join the waiting list."
            )
        if registrant["in_line"]:
            raise Conflict(f"{registration_no} is already on the waiting list.")
        row = await connection.fetchrow(
            """
            INSERT INTO waiting_list (sale_id, registrant_id, zone, kind)
            VALUES ($1, $2, $3, $4)
            RETURNING id, joined_at
            """,
            sale_id,
            registrant["id"],
            zone,
            kind,
        )
        assert row is not None
        entry = {
            "entry": row["id"],
            "registration_no": registration_no,
            "zone": zone,
            "kind": kind,
            "status": "waiting",
            "joined_at": row["joined_at"].isoformat(),
        }
        await audit.record(
            connection,
            sale_id,
            actor,
            "waiting_list_joined",
            registration_no,
            after=entry,
        )
    return entry


async def list_entries(db: DbExecutor, sale_id: int) -> list[dict[str, Any]]:
    """Return the sale's entries, those still waiting first, in line order."""
    rows = await db.fetch(
        """
        SELECT w.id, r.registration_no, r.name, w.zone, w.kind, w.status,
               w.joined_at, w.hold_id
        FROM waiting_list w JOIN registrants r ON r.id = w.registrant_id
        WHERE w.sale_id = $1
        ORDER BY w.status <> 'waiting', w.joined_at, w.id
        """,
        sale_id,
    )
    return [
        {
            "entry": row["id"],
            "registration_no": row["registration_no"],
            "name": row["name"],
            "zone": row["zone"],
            "kind": row["kind"],
            "status": row["status"],
            "joined_at": row["joined_at"].isoformat(),
            "hold": row["hold_id"],
        }
        for row in rows
    ]


_NEXT_IN_LINE = """
    SELECT w.id, w.joined_at, r.registration_no
    FROM waiting_list w JOIN registrants r ON r.id = w.registrant_id
    WHERE w.sale_id = $1 AND w.status = 'waiting'
      AND (w.zone IS NULL OR w.zone = $2) AND (w.kind IS NULL OR w.kind = $3)
    ORDER BY w.joined_at, w.id
    LIMIT 1
    FOR UPDATE OF w SKIP LOCKED
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def offer_next(
    pool: DbPool, store: RedisStore, ended: EndedHold, offer_window: dt.timedelta
) -> str | None:
    """Offer the ended hold's space to the first matching entry in line.

    Returns the new hold's id, or "not_holder" when another process already
    freed the space in Redis. Returns None when no one matches or the sale
    is not loaded in Redis, so the caller releases the space to the market
    instead. Raises Redis and Postgres errors.
    """
    keys = SaleKeys.for_sale(ended.sale_id)
    offer_ms = int(offer_window.total_seconds() * 1000)
    async with pool.acquire() as connection, connection.transaction():
        # Two processes freeing the same ended hold take turns here, so the
        # second finds the first entry offered and cannot jump the line.
        await connection.execute(
            "SELECT 1 FROM holds WHERE id = $1 FOR UPDATE", ended.id
        )
        while True:
            entry = await connection.fetchrow(
                _NEXT_IN_LINE, ended.sale_id, ended.zone, ended.kind
            )
            if entry is None:
                return None
            reply = await OFFER(
                store.client,
                [keys.meta, keys.holders, keys.limits, keys.counts, keys.grants],
                [
                    ended.sale_id,
                    ended.label,
                    ended.id,
                    ended.registration_no,
                    entry["registration_no"],
                    offer_ms,
                ],
            )
            parts = [_text(part) for part in reply]
            if parts[0] == "granted":
                grant = Grant(
                    hold_id=parts[1],
                    sale_id=ended.sale_id,
                    label=ended.label,
                    registration_no=entry["registration_no"],
                    granted_ms=int(parts[2]),
                    deadline_ms=int(parts[3]),
                )
                await _record_offer(connection, ended, entry["id"], grant)
                return grant.hold_id
            if parts[0] == "not_holder":
                return "not_holder"
            if parts[0] == "not_armed":
                return None
            # limit_reached or not_registered: this entry cannot take a space.
            await _skip(connection, ended.sale_id, entry["id"], parts[0])


async def _record_offer(
    connection: DbConnection, ended: EndedHold, entry_id: int, grant: Grant
) -> None:
    await record_grants(connection, ended.sale_id, [grant])
    await connection.execute(
        "UPDATE waiting_list SET status = 'offered', hold_id = $2 WHERE id = $1",
        entry_id,
        grant.hold_id,
    )
    await audit.record(
        connection,
        ended.sale_id,
        "waiting_list",
        "offer_made",
        grant.hold_id,
        after={
            "entry": entry_id,
            "space": ended.label,
            "registration_no": grant.registration_no,
            "replaces_hold": ended.id,
            "deadline_ms": grant.deadline_ms,
        },
    )
    logger.info(
        "offer_made",
        extra={"sale_id": ended.sale_id, "hold": grant.hold_id, "space": ended.label},
    )


async def _skip(
    connection: DbConnection, sale_id: int, entry_id: int, why: str
) -> None:
    await connection.execute(
        "UPDATE waiting_list SET status = 'left' WHERE id = $1", entry_id
    )
    await audit.record(
        connection,
        sale_id,
        "waiting_list",
        "waiting_list_skipped",
        str(entry_id),
        after={"reason": why},
    )


async def lapse_offers(connection: DbConnection, hold_ids: list[str]) -> None:
    """Mark the entries whose offer ended with these holds as lapsed."""
    await connection.execute(
        """
        UPDATE waiting_list SET status = 'lapsed'
        WHERE hold_id = ANY($1::text[]) AND status = 'offered'
        """,
        hold_ids,
    )


async def link_recorded_offers(db: DbExecutor, sale_id: int) -> int:
    """Link entries still waiting to offers the persister recorded for them.

    An offer granted in Redis whose process died before its Postgres
    transaction committed is recorded from the grant stream as a plain hold;
    this finds such holds (a live hold of a waiting registrant granted after
    they joined) and marks the entry offered. Returns how many were linked.
    """
    result = await db.execute(
        """
        UPDATE waiting_list w SET status = 'offered', hold_id = h.id
        FROM holds h
        WHERE w.sale_id = $1 AND w.status = 'waiting'
          AND h.registrant_id = w.registrant_id AND h.granted_at >= w.joined_at
          AND h.status IN ('held', 'paid', 'signed')
        """,
        sale_id,
    )
    return int(result.split()[-1])


async def buyer_entry(
    db: DbExecutor, sale_id: int, registration_no: str
) -> dict[str, Any] | None:
    """Return the registrant's latest entry with its place in line, or None.

    `position` is 1 for the first in line and counts only entries still
    waiting; it is None once the entry is no longer waiting.
    """
    row = await db.fetchrow(
        """
        SELECT w.id, w.zone, w.kind, w.status, w.joined_at, w.hold_id,
               CASE WHEN w.status = 'waiting' THEN (
                   SELECT count(*) FROM waiting_list ahead
                   WHERE ahead.sale_id = w.sale_id AND ahead.status = 'waiting'
                     AND (ahead.joined_at, ahead.id) <= (w.joined_at, w.id)
               ) END AS position
        FROM waiting_list w JOIN registrants r ON r.id = w.registrant_id
        WHERE w.sale_id = $1 AND r.registration_no = $2
        ORDER BY w.joined_at DESC, w.id DESC
        LIMIT 1
        """,
        sale_id,
        registration_no,
    )
    if row is None:
        return None
    return {
        "entry": row["id"],
        "zone": row["zone"],
        "kind": row["kind"],
        "status": row["status"],
        "joined_at": row["joined_at"].isoformat(),
        "hold": row["hold_id"],
        "position": row["position"],
    }
