"""Reconciliation: does Redis agree with Postgres about who holds what?

Compares, for one sale, the live holds in Postgres (held, paid, signed) with
the holders in Redis, each buyer's count of live holds, and the grants that
are still waiting in the stream. Read-only: it reports, it repairs nothing.
"""

from __future__ import annotations

import dataclasses

import redis.asyncio as aioredis

from app.keys import SaleKeys
from app.types import DbExecutor


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    sale_id: int
    live_in_postgres: int
    held_in_redis: int
    unrecorded_grants: int
    differences: list[str]

    @property
    def agrees(self) -> bool:
        return not self.differences


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _unrecorded_grants(
    pool: DbExecutor, client: aioredis.Redis, keys: SaleKeys
) -> int:
    """Count the grants in the stream whose hold is not in Postgres."""
    streamed: list[str] = []
    start = "-"
    while True:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(
            keys.grants, min=start, count=10_000
        )  # type: ignore[assignment]
        streamed += [_text(fields[b"hold"]) for _, fields in entries]
        if len(entries) < 10_000:
            break
        start = "(" + _text(entries[-1][0])
    if not streamed:
        return 0
    recorded = await pool.fetchval(
        "SELECT count(*) FROM holds WHERE id = ANY($1::text[])", streamed
    )
    return len(set(streamed)) - int(recorded)


async def reconcile(pool: DbExecutor, client: aioredis.Redis, sale_id: int) -> Report:
    """Compare both stores for one sale and list every difference found."""
    keys = SaleKeys.for_sale(sale_id)
    differences: list[str] = []
    rows = await pool.fetch(
        """
        SELECT h.id, s.label, r.registration_no
        FROM holds h
        JOIN spaces s ON s.id = h.space_id
        JOIN registrants r ON r.id = h.registrant_id
        WHERE h.sale_id = $1 AND h.status IN ('held', 'paid', 'signed')
        """,
        sale_id,
    )
    postgres = {row["label"]: row["id"] for row in rows}
    postgres_counts: dict[str, int] = {}
    for row in rows:
        number = row["registration_no"]
        postgres_counts[number] = postgres_counts.get(number, 0) + 1

    redis_holders = {
        _text(label): _text(hold)
        for label, hold in (await client.hgetall(keys.holders)).items()
    }
    redis_counts = {
        _text(number): int(count)
        for number, count in (await client.hgetall(keys.counts)).items()
    }
    unrecorded = await _unrecorded_grants(pool, client, keys)

    for label in sorted(set(postgres) | set(redis_holders)):
        in_postgres = postgres.get(label)
        in_redis = redis_holders.get(label)
        if in_postgres == in_redis:
            continue
        if in_postgres is None:
            differences.append(
                f"space {label}: Redis holds it for {in_redis}, Postgres has no "
                "live hold"
            )
        elif in_redis is None:
            differences.append(
                f"space {label}: Postgres has live hold {in_postgres}, Redis shows "
                "it free"
            )
        else:
            differences.append(
                f"space {label}: Postgres has hold {in_postgres}, Redis has {in_redis}"
            )
    for number in sorted(set(postgres_counts) | set(redis_counts)):
        expected = postgres_counts.get(number, 0)
        counted = redis_counts.get(number, 0)
        if expected != counted:
            differences.append(
                f"buyer {number}: {expected} live hold(s) in Postgres, Redis "
                f"counts {counted}"
            )
    if unrecorded:
        differences.append(
            f"{unrecorded} grant(s) in the stream are not yet recorded in Postgres; "
            "is the persister running?"
        )
    return Report(
        sale_id=sale_id,
        live_in_postgres=len(postgres),
        held_in_redis=len(redis_holders),
        unrecorded_grants=unrecorded,
        differences=differences,
    )
