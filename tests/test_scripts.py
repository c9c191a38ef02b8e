"""The Lua scripts on their own, against a real redis-server."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from app import scripts
from app.keys import SaleKeys
from app.redis_store import GrabReply, RedisStore
from app.settings import Settings

pytestmark = pytest.mark.anyio
_sale_ids = itertools.count(900_001)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    assert settings.redis_url
    connection = aioredis.Redis.from_url(settings.redis_url)
    await scripts.load_all(connection)
    yield connection
    await connection.aclose()


async def redis_now_ms(client: aioredis.Redis) -> int:
    seconds, microseconds = await client.time()
    return seconds * 1000 + microseconds // 1000


async def load_sale(
    client: aioredis.Redis,
    spaces: int = 3,
    limits: dict[str, int] | None = None,
    opens_ms: int | None = None,
    closes_ms: int | None = None,
    state: str = "armed",
) -> SaleKeys:
    """Write a sale's keys directly, as arming would."""
    keys = SaleKeys.for_sale(next(_sale_ids))
    now = await redis_now_ms(client)
    await client.hset(
        keys.meta,
        mapping={
            "state": state,
            "opens_ms": now - 1000 if opens_ms is None else opens_ms,
            "closes_ms": now + 3_600_000 if closes_ms is None else closes_ms,
            "payment_ms": 172_800_000,
            "generation": 1,
            "seq": 0,
            "version": 0,
        },
    )
    await client.hset(keys.spaces, mapping={f"S-{i}": i for i in range(spaces)})
    await client.setbit(keys.taken, spaces - 1, 0)
    await client.hset(keys.limits, mapping=limits or {"b1": 1, "b2": 1, "b3": 2})
    return keys


def store(client: aioredis.Redis) -> RedisStore:
    return RedisStore(client, idempotency_ttl_seconds=600)


async def grab(
    client: aioredis.Redis, keys: SaleKeys, buyer: str, *labels: str, key: str = ""
) -> GrabReply:
    return await store(client).grab(
        keys.sale_id, buyer, key or f"{buyer}-{'-'.join(labels)}", list(labels)
    )


async def test_grab_grants_free_space(client: aioredis.Redis) -> None:
    keys = await load_sale(client)

    reply = await grab(client, keys, "b1", "S-1")

    assert reply.outcome == "granted"
    assert reply.hold_id == f"{keys.sale_id}-1"
    assert reply.label == "S-1"
    assert reply.deadline_ms - reply.granted_ms == 172_800_000
    assert await client.hget(keys.holders, "S-1") == reply.hold_id.encode()
    assert await client.getbit(keys.taken, 1) == 1
    assert await client.hget(keys.counts, "b1") == b"1"
    assert await client.hget(keys.meta, "version") == b"1"
    entries = await client.xrange(keys.grants)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"hold"] == reply.hold_id.encode()
    assert fields[b"label"] == b"S-1"
    assert fields[b"buyer"] == b"b1"


async def test_grab_taken_space(client: aioredis.Redis) -> None:
    keys = await load_sale(client)
    await grab(client, keys, "b1", "S-0")

    reply = await grab(client, keys, "b2", "S-0")

    assert reply.outcome == "space_taken"
    assert await client.hget(keys.counts, "b2") is None
    assert await client.xlen(keys.grants) == 1


async def test_grab_ranked_list_takes_first_free(client: aioredis.Redis) -> None:
    keys = await load_sale(client, spaces=5)
    await grab(client, keys, "b1", "S-0")
    await grab(client, keys, "b2", "S-1")

    reply = await grab(client, keys, "b3", "S-0", "S-1", "S-3", "S-2")

    assert reply.outcome == "granted"
    assert reply.label == "S-3"
    assert await client.getbit(keys.taken, 2) == 0


async def test_grab_ranked_list_all_taken(client: aioredis.Redis) -> None:
    keys = await load_sale(client, spaces=2)
    await grab(client, keys, "b1", "S-0")
    await grab(client, keys, "b3", "S-1")

    reply = await grab(client, keys, "b2", "S-0", "S-1")

    assert reply.outcome == "space_taken"
    assert await client.xlen(keys.grants) == 2


async def test_grab_limit_reached(client: aioredis.Redis) -> None:
    keys = await load_sale(client, spaces=4)
    assert (await grab(client, keys, "b3", "S-0")).outcome == "granted"
    assert (await grab(client, keys, "b3", "S-1")).outcome == "granted"

    reply = await grab(client, keys, "b3", "S-2")

    assert reply.outcome == "limit_reached"
    assert reply.limit == 2
    assert await client.hget(keys.holders, "S-2") is None
    assert await client.hget(keys.counts, "b3") == b"2"


async def test_grab_unregistered_buyer(client: aioredis.Redis) -> None:
    keys = await load_sale(client)

    reply = await grab(client, keys, "stranger", "S-0")

    assert reply.outcome == "not_registered"
    assert await client.hget(keys.holders, "S-0") is None


async def test_grab_unknown_space_in_list(client: aioredis.Redis) -> None:
    keys = await load_sale(client)

    reply = await grab(client, keys, "b1", "S-0", "NOPE")

    assert reply.outcome == "unknown_space"
    assert reply.label == "NOPE"
    assert await client.hget(keys.holders, "S-0") is None
    assert await client.xlen(keys.grants) == 0


async def test_grab_sale_not_armed(client: aioredis.Redis) -> None:
    keys = SaleKeys.for_sale(next(_sale_ids))

    reply = await grab(client, keys, "b1", "S-0")

    assert reply.outcome == "not_armed"


async def test_grab_paused_sale(client: aioredis.Redis) -> None:
    keys = await load_sale(client, state="paused")

    reply = await grab(client, keys, "b1", "S-0")

    assert reply.outcome == "sale_paused"
    assert await client.hget(keys.holders, "S-0") is None


async def test_grab_closed_state(client: aioredis.Redis) -> None:
    keys = await load_sale(client, state="closed")

    reply = await grab(client, keys, "b1", "S-0")

    assert reply.outcome == "sale_closed"


async def test_grab_window_edges_by_millisecond(client: aioredis.Redis) -> None:
    """Rejected while now < opens_ms, granted from opens_ms on (Redis clock).

    Each trial polls across the opening; trials repeat until one attempt has
    landed in the millisecond before opening and one in the opening
    millisecond itself, so a busy machine only makes the test take longer.
    """
    seen_last_rejection = seen_first_grant = False
    for trial in range(50):
        opens = await redis_now_ms(client) + 20
        keys = await load_sale(client, spaces=1, opens_ms=opens, limits={"b1": 1})
        attempt = 0
        while True:
            reply = await grab(client, keys, "b1", "S-0", key=f"t{trial}-{attempt}")
            attempt += 1
            if reply.outcome == "granted":
                assert reply.granted_ms >= opens
                seen_first_grant |= reply.granted_ms == opens
                break
            assert reply.outcome == "sale_not_open"
            assert reply.opens_ms == opens
            assert reply.now_ms < opens
            seen_last_rejection |= reply.now_ms == opens - 1
            assert attempt < 100_000, "the sale never opened"
        if seen_last_rejection and seen_first_grant:
            break

    assert seen_last_rejection, "no attempt landed one millisecond before opening"
    assert seen_first_grant, "no grant landed in the opening millisecond"


async def test_grab_window_close_is_exclusive(client: aioredis.Redis) -> None:
    now = await redis_now_ms(client)
    closes = now + 40
    keys = await load_sale(client, spaces=200, closes_ms=closes, limits={"b1": 200})
    granted_at: list[int] = []
    for attempt in range(100_000):
        reply = await grab(client, keys, "b1", f"S-{attempt % 200}", key=f"k{attempt}")
        if reply.outcome == "sale_closed":
            break
        if reply.outcome == "granted":
            granted_at.append(reply.granted_ms)
    else:
        pytest.fail("the sale never closed")

    assert granted_at, "no grab succeeded before closing"
    assert max(granted_at) <= closes - 1


async def test_idempotent_repeat_returns_first_answer(client: aioredis.Redis) -> None:
    keys = await load_sale(client)
    first = await grab(client, keys, "b1", "S-0", key="click-1")

    repeat = await grab(client, keys, "b1", "S-0", key="click-1")

    assert repeat.replayed
    assert repeat.outcome == "granted"
    assert repeat.hold_id == first.hold_id
    assert repeat.granted_ms == first.granted_ms
    assert await client.xlen(keys.grants) == 1
    assert await client.hget(keys.counts, "b1") == b"1"


async def test_idempotent_repeat_of_loss(client: aioredis.Redis) -> None:
    keys = await load_sale(client)
    await grab(client, keys, "b1", "S-0")
    lost = await grab(client, keys, "b2", "S-0", key="click-9")
    await store(client).release(keys.sale_id, "S-0", f"{keys.sale_id}-1", "b1")

    repeat = await grab(client, keys, "b2", "S-0", key="click-9")

    assert lost.outcome == "space_taken"
    assert repeat.outcome == "space_taken"
    assert repeat.replayed
    assert await client.hget(keys.holders, "S-0") is None


async def test_not_open_reply_is_not_stored(client: aioredis.Redis) -> None:
    now = await redis_now_ms(client)
    keys = await load_sale(client, opens_ms=now + 3_600_000)

    await grab(client, keys, "b1", "S-0", key="early")

    assert await client.get(keys.idempotency("b1", "early")) is None


async def test_release_frees_space_and_limit(client: aioredis.Redis) -> None:
    keys = await load_sale(client)
    won = await grab(client, keys, "b1", "S-2")

    released = await store(client).release(keys.sale_id, "S-2", won.hold_id, "b1")

    assert released
    assert await client.hget(keys.holders, "S-2") is None
    assert await client.getbit(keys.taken, 2) == 0
    assert await client.hget(keys.counts, "b1") == b"0"
    again = await grab(client, keys, "b2", "S-2")
    assert again.outcome == "granted"
    assert again.hold_id != won.hold_id


async def test_release_twice_changes_nothing(client: aioredis.Redis) -> None:
    keys = await load_sale(client)
    won = await grab(client, keys, "b1", "S-0")
    await store(client).release(keys.sale_id, "S-0", won.hold_id, "b1")
    regrab = await grab(client, keys, "b2", "S-0")

    second = await store(client).release(keys.sale_id, "S-0", won.hold_id, "b1")

    assert not second
    assert await client.hget(keys.holders, "S-0") == regrab.hold_id.encode()
    assert await client.hget(keys.counts, "b1") == b"0"
    assert await client.getbit(keys.taken, 0) == 1


async def test_set_state_pauses_and_resumes(client: aioredis.Redis) -> None:
    keys = await load_sale(client)

    assert await store(client).set_state(keys.sale_id, "paused")
    paused = await grab(client, keys, "b1", "S-0", key="p1")
    assert await store(client).set_state(keys.sale_id, "armed")
    resumed = await grab(client, keys, "b1", "S-0", key="p2")

    assert paused.outcome == "sale_paused"
    assert resumed.outcome == "granted"


async def test_set_state_unarmed_sale(client: aioredis.Redis) -> None:
    keys = SaleKeys.for_sale(next(_sale_ids))

    assert not await store(client).set_state(keys.sale_id, "paused")
    assert await client.exists(keys.meta) == 0


async def test_snapshot_matches_bitmap(client: aioredis.Redis) -> None:
    keys = await load_sale(client, spaces=10)
    await grab(client, keys, "b1", "S-0")
    await grab(client, keys, "b2", "S-9")

    snapshot = await store(client).snapshot(keys.sale_id)

    assert snapshot is not None
    assert snapshot.version == 2
    assert snapshot.generation == 1
    assert snapshot.bitmap == bytes([0b1000_0000, 0b0100_0000])


async def test_script_reloaded_after_flush(client: aioredis.Redis) -> None:
    keys = await load_sale(client)
    await client.script_flush()

    reply = await grab(client, keys, "b1", "S-0")

    assert reply.outcome == "granted"
    assert (await client.script_exists(scripts.GRAB.sha))[0]
