"""A manager's changes to a sale: create, configure, import, arm, pause,
resume and close. Each change is written to the audit log in the same
transaction as the change itself.

Pausing, resuming and closing lock the sale's row, then change the state in
Redis through the `set_state` script, so grabs stop or start atomically,
and then in Postgres. Two managers doing it at once take turns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

import redis.asyncio as aioredis

from app import arming, audit, imports, sales
from app.errors import BadRequest, Conflict
from app.persister import Persister
from app.redis_store import RedisStore
from app.sales import Sale
from app.staff import StaffMember
from app.types import DbPool

RELEASE_POLICIES = ("market", "waiting_list")

# For each action: the states it starts from, and the state it sets.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "pause": (("armed",), "paused"),
    "resume": (("paused",), "armed"),
    "close": (("draft", "armed", "paused"), "closed"),
}


def sale_json(sale: Sale) -> dict[str, Any]:
    return {
        "sale": sale.id,
        "name": sale.name,
        "zones": list(sale.zones),
        "opens_at": sale.opens_at.isoformat(),
        "closes_at": sale.closes_at.isoformat(),
        "limit": sale.buyer_limit,
        "payment_hours": sale.payment_window.total_seconds() / 3600,
        "state": sale.state,
        "generation": sale.generation,
    }


@dataclasses.dataclass(frozen=True, slots=True)
class SalePolicy:
    """The release policy: market or waiting list, and the offer length in hours."""

    released_to: str = "market"
    offer_hours: float = 24.0

    def validate(self) -> None:
        if self.released_to not in RELEASE_POLICIES:
            raise BadRequest(
                f"released_to must be market or waiting_list, got "
                f"{self.released_to!r}.",
                field="released_to",
            )
        if not 0 < self.offer_hours <= 24 * 30:
            raise BadRequest(
                f"offer_hours must be above 0 and at most 720, got {self.offer_hours}.",
                field="offer_hours",
            )


async def sale_policy(pool: DbPool, sale_id: int) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT released_to, offer_window FROM sales WHERE id = $1", sale_id
    )
    if row is None:
        return {}
    return {
        "released_to": row["released_to"],
        "offer_hours": row["offer_window"].total_seconds() / 3600,
    }


async def create_sale(
    pool: DbPool,
    member: StaffMember,
    fields: dict[str, Any],
    policy: SalePolicy,
) -> Sale:
    """Create a draft sale with its policy; `fields` are `sales.create_sale`'s."""
    policy.validate()
    async with pool.acquire() as connection, connection.transaction():
        sale = await sales.create_sale(connection, **fields)
        await _set_policy(connection, sale.id, policy)
        await audit.record(
            connection,
            sale.id,
            member.actor,
            "sale_created",
            f"sale:{sale.id}",
            after={**sale_json(sale), **dataclasses.asdict(policy)},
        )
    return sale


async def _set_policy(connection: Any, sale_id: int, policy: SalePolicy) -> None:
    await connection.execute(
        "UPDATE sales SET released_to = $2, offer_window = $3 WHERE id = $1",
        sale_id,
        policy.released_to,
        dt.timedelta(hours=policy.offer_hours),
    )


async def update_policy(
    pool: DbPool, member: StaffMember, sale_id: int, policy: SalePolicy
) -> dict[str, Any]:
    """Change where released spaces go; return the new policy."""
    policy.validate()
    await sales.get_sale(pool, sale_id)
    before = await sale_policy(pool, sale_id)
    async with pool.acquire() as connection, connection.transaction():
        await _set_policy(connection, sale_id, policy)
        after = dataclasses.asdict(policy)
        await audit.record(
            connection,
            sale_id,
            member.actor,
            "sale_policy_changed",
            f"sale:{sale_id}",
            before=before,
            after=after,
        )
    return after


async def import_file(
    pool: DbPool,
    member: StaffMember,
    sale_id: int,
    what: str,
    text: str,
    memory_kib: int,
) -> int:
    """Import the sale's spaces or registrants from CSV text; return the count.

    Raises `ImportRejected` listing every bad line, and `Conflict` when the
    sale is no longer a draft; either way nothing is imported.
    """
    sale = await sales.get_sale(pool, sale_id)
    async with pool.acquire() as connection, connection.transaction():
        if what == "spaces":
            count = await imports.import_spaces(connection, sale, text)
        else:
            count = await imports.import_registrants(connection, sale, text, memory_kib)
        await audit.record(
            connection,
            sale_id,
            member.actor,
            f"{what}_imported",
            f"sale:{sale_id}",
            after={
                "rows": count,
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
            },
        )
    return count


async def arm(
    pool: DbPool,
    client: aioredis.Redis,
    member: StaffMember,
    sale_id: int,
    force: bool,
) -> Sale:
    """Load the sale into Redis (see `arming.arm_sale`) and audit it."""
    before = await sales.get_sale(pool, sale_id)
    persister = Persister(client, pool, claim_idle_ms=0)
    armed = await arming.arm_sale(
        pool, client, sale_id, force=force, drain=persister.drain_sale
    )
    await audit.record(
        pool,
        sale_id,
        member.actor,
        "sale_armed",
        f"sale:{sale_id}",
        before={"state": before.state, "generation": before.generation},
        after={"state": armed.state, "generation": armed.generation, "force": force},
    )
    return armed


async def change_state(
    pool: DbPool, store: RedisStore, member: StaffMember, sale_id: int, action: str
) -> Sale:
    """Pause, resume or close the sale in Redis and Postgres; return it.

    Raises `Conflict` when the sale is not in a state the action starts
    from, or when pausing or resuming a sale that is not loaded in Redis.
    """
    allowed, target = TRANSITIONS[action]
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            "SELECT * FROM sales WHERE id = $1 FOR UPDATE", sale_id
        )
        if row is None:
            await sales.get_sale(connection, sale_id)
        assert row is not None
        sale = Sale.from_record(row)
        if sale.state not in allowed:
            raise Conflict(
                f"Sale {sale_id} is {sale.state}; {action} needs a sale that is "
                f"{' or '.join(allowed)}.",
                state=sale.state,
            )
        # NOTE: Redis changes first, so a pause stops grabs even if Postgres
        # then fails; the two states then differ until the action is repeated.
        in_redis = await store.set_state(sale_id, target)
        if not in_redis and action != "close":
            raise Conflict(
                f"Sale {sale_id} is not loaded in Redis; arm it again before you "
                f"{action} it."
            )
        updated = await connection.fetchrow(
            "UPDATE sales SET state = $2 WHERE id = $1 RETURNING *", sale_id, target
        )
        assert updated is not None
        await audit.record(
            connection,
            sale_id,
            member.actor,
            f"sale_{target}" if action != "resume" else "sale_resumed",
            f"sale:{sale_id}",
            before={"state": sale.state},
            after={"state": target},
        )
    return Sale.from_record(updated)
