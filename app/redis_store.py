"""The sale's launch-minute state in Redis: grab, release, snapshot, state.

Every call here fails closed: a `redis.RedisError` propagates and callers
respond 503. If a grab did run before the connection failed, a retry with
the same Idempotency-Key returns its result instead of granting again.
"""

from __future__ import annotations

import dataclasses

import orjson
import redis.asyncio as aioredis

from app import scripts
from app.keys import SaleKeys
from app.pipelined_redis import PipelinedRedis


@dataclasses.dataclass(frozen=True, slots=True)
class GrabReply:
    """The grab script's decision, as typed fields."""

    outcome: str
    hold_id: str = ""
    label: str = ""
    granted_ms: int = 0
    deadline_ms: int = 0
    limit: int = 0
    opens_ms: int = 0
    now_ms: int = 0
    replayed: bool = False

    @classmethod
    def from_script(cls, reply: list[bytes | str], replayed: bool = False) -> GrabReply:
        parts = [p.decode() if isinstance(p, bytes) else str(p) for p in reply]
        outcome = parts[0]
        if outcome == "replay":
            return cls.from_script(orjson.loads(parts[1]), replayed=True)
        if outcome == "granted":
            return cls(
                outcome,
                hold_id=parts[1],
                label=parts[2],
                granted_ms=int(parts[3]),
                deadline_ms=int(parts[4]),
                replayed=replayed,
            )
        if outcome == "limit_reached":
            return cls(outcome, limit=int(parts[1]), replayed=replayed)
        if outcome == "unknown_space":
            return cls(outcome, label=parts[1], replayed=replayed)
        if outcome == "sale_not_open":
            return cls(outcome, opens_ms=int(parts[1]), now_ms=int(parts[2]))
        return cls(outcome, replayed=replayed)


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """The availability bitmap with the generation and version naming it."""

    generation: int
    version: int
    state: str
    bitmap: bytes


class RedisStore:
    def __init__(
        self,
        client: aioredis.Redis,
        idempotency_ttl_seconds: int,
        hot: PipelinedRedis | None = None,
    ) -> None:
        self.client = client
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        # The lean connection for grabs; None sends them through redis-py.
        self.hot = hot

    async def grab(
        self,
        sale_id: int,
        registration_no: str,
        idempotency_key: str,
        labels: list[str],
    ) -> GrabReply:
        """Run the grab script once; raises `redis.RedisError` when Redis fails."""
        keys = SaleKeys.for_sale(sale_id)
        key_names = [
            keys.meta,
            keys.spaces,
            keys.taken,
            keys.holders,
            keys.limits,
            keys.counts,
            keys.grants,
            keys.idempotency(registration_no, idempotency_key),
        ]
        args: list[str | int] = [
            sale_id,
            registration_no,
            self.idempotency_ttl_seconds,
            *labels,
        ]
        if self.hot is not None:
            reply = await scripts.GRAB.call_pipelined(self.hot, key_names, args)
        else:
            reply = await scripts.GRAB(self.client, key_names, args)
        return GrabReply.from_script(reply)

    async def release(
        self, sale_id: int, label: str, hold_id: str, registration_no: str
    ) -> bool:
        """Free the space if `hold_id` still holds it; return whether it did."""
        keys = SaleKeys.for_sale(sale_id)
        released = await scripts.RELEASE(
            self.client,
            [keys.meta, keys.spaces, keys.taken, keys.holders, keys.counts],
            [label, hold_id, registration_no],
        )
        return bool(released)

    async def snapshot(self, sale_id: int) -> Snapshot | None:
        """Return the availability snapshot, or None when the sale is not armed."""
        keys = SaleKeys.for_sale(sale_id)
        generation, version, state, bitmap = await scripts.SNAPSHOT(
            self.client, [keys.meta, keys.taken], []
        )
        if generation is None:
            return None
        return Snapshot(
            generation=int(generation),
            version=int(version or 0),
            state=state.decode() if isinstance(state, bytes) else str(state),
            bitmap=bitmap or b"",
        )

    async def set_state(self, sale_id: int, state: str) -> bool:
        """Set the sale's state in Redis; return False when it is not armed."""
        keys = SaleKeys.for_sale(sale_id)
        return bool(await scripts.SET_STATE(self.client, [keys.meta], [state]))
