"""Recording grants from Redis as holds in Postgres, and reading them back.

A grant is recorded by whichever comes first, the request that won it or the
persister reading the grant stream; the insert is keyed by hold id, so the
second one changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg

from app.types import DbExecutor


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """One space granted by the grab script, as appended to the grant stream."""

    hold_id: str
    sale_id: int
    label: str
    registration_no: str
    granted_ms: int
    deadline_ms: int


def _time(milliseconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(milliseconds / 1000, tz=dt.UTC)


_INSERT = """
    WITH granted AS (
        SELECT * FROM unnest($2::text[], $3::text[], $4::text[],
                             $5::timestamptz[], $6::timestamptz[])
            WITH ORDINALITY AS g(id, label, registration_no, granted_at, deadline, n)
    ), inserted AS (
        INSERT INTO holds (id, sale_id, space_id, registrant_id, granted_at,
                           deadline, price_fen)
        SELECT g.id, $1, s.id, r.id, g.granted_at, g.deadline, s.price_fen
        FROM granted g
        JOIN spaces s ON s.sale_id = $1 AND s.label = g.label
        JOIN registrants r ON r.sale_id = $1
                          AND r.registration_no = g.registration_no
        ORDER BY g.n
        ON CONFLICT (id) DO NOTHING
        RETURNING id, space_id, registrant_id, granted_at, deadline
    ), audited AS (
        INSERT INTO audit_log (sale_id, actor, action, subject, after)
        SELECT $1, 'grab', 'hold_granted', i.id,
               jsonb_build_object('space_id', i.space_id,
                                  'registrant_id', i.registrant_id,
                                  'granted_at', i.granted_at,
                                  'deadline', i.deadline,
                                  'status', 'held')
        FROM inserted i
        ORDER BY i.granted_at, i.id
    )
    SELECT id FROM inserted
"""


async def record_grants(
    db: DbExecutor, sale_id: int, grants: Sequence[Grant], skip_known: bool = False
) -> set[str]:
    """Insert the grants of one sale that are not recorded yet.

    Returns the ids of all given grants that are in Postgres afterwards, new or
    old. An id missing from the result names a space or registrant that does
    not exist. With `skip_known`, grants already in Postgres are looked up
    first and not sent again, so the persister does not repeat the winners'
    own inserts. Raises asyncpg errors and OSError when Postgres fails.
    """
    if not grants:
        return set()
    known: set[str] = set()
    if skip_known:
        known = await _present(db, [g.hold_id for g in grants])
        grants = [g for g in grants if g.hold_id not in known]
        if not grants:
            return known
    # One order for every writer: two batches that share holds then wait for
    # each other instead of deadlocking.
    grants = sorted(grants, key=lambda g: g.hold_id)
    await db.fetch(
        _INSERT,
        sale_id,
        [g.hold_id for g in grants],
        [g.label for g in grants],
        [g.registration_no for g in grants],
        [_time(g.granted_ms) for g in grants],
        [_time(g.deadline_ms) for g in grants],
    )
    return known | await _present(db, [g.hold_id for g in grants])


async def _present(db: DbExecutor, ids: list[str]) -> set[str]:
    rows = await db.fetch("SELECT id FROM holds WHERE id = ANY($1::text[])", ids)
    return {row["id"] for row in rows}


async def buyer_holds(
    db: DbExecutor, sale_id: int, registration_no: str
) -> list[dict[str, Any]]:
    """Return one buyer's holds in this sale, oldest first, as JSON-ready dicts."""
    rows = await db.fetch(
        """
        SELECT h.id, h.status, h.granted_at, h.deadline, h.price_fen,
               h.queue_no, h.contract_no, h.paid_at, h.signed_at, h.ended_at,
               h.end_reason, s.label, s.zone, s.level, s.kind
        FROM holds h
        JOIN spaces s ON s.id = h.space_id
        JOIN registrants r ON r.id = h.registrant_id
        WHERE h.sale_id = $1 AND r.registration_no = $2
        ORDER BY h.granted_at, h.id
        """,
        sale_id,
        registration_no,
    )
    return [hold_json(row) for row in rows]


def format_queue_no(queue_no: int | None) -> str | None:
    return None if queue_no is None else f"{queue_no:03d}"


def hold_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "hold": row["id"],
        "status": row["status"],
        "space": row["label"],
        "zone": row["zone"],
        "level": row["level"],
        "kind": row["kind"],
        "amount_fen": row["price_fen"],
        "amount_yuan": row["price_fen"] / 100,
        "granted_at": row["granted_at"].isoformat(),
        "deadline": row["deadline"].isoformat(),
        "queue_no": format_queue_no(row["queue_no"]),
        "contract_no": row["contract_no"],
        "paid_at": row["paid_at"] and row["paid_at"].isoformat(),
        "signed_at": row["signed_at"] and row["signed_at"].isoformat(),
        "ended_at": row["ended_at"] and row["ended_at"].isoformat(),
        "end_reason": row["end_reason"],
    }
