"""Each worker's recent view of the spaces held in a sale.

Once a launch sells out, nearly every click names spaces that are already
held. A worker whose view shows every space of a click held by other buyers
proposes the click's outcome itself. lua/remember.lua stores it under the
click's Idempotency-Key only after checking in Redis that the grab script
would decide the same now (`RedisStore.remember`). Otherwise the grab
script runs. Redis and the grab script still decide every grant, and a
release, a pause, a close or a re-arm takes effect at once.

The view proposes an outcome only when all of these are true:

- it was read less than `max_age` ago (100 ms by default), so that few
  proposals are turned down;
- the sale is open on Redis's clock, with the whole round trip of the read
  taken as uncertainty at both edges;
- the grab script has found the buyer registered in this generation;
- every requested label exists and is held by another buyer.

Then a buyer who holds no space, and held none since the view was loaded,
gets "space_taken". A buyer whom the grab script rejected with
"limit_reached" since the view was loaded gets "limit_reached" again, until
any hold of the sale ends. Any other click goes to the grab script.

A re-armed sale has a new generation, and a view of an earlier generation
is dropped, never patched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app import scripts
from app.keys import SaleKeys

logger = logging.getLogger(__name__)

# Grant entries read per script call; more are read by further calls.
BATCH = 5000
# Calls per refresh before the view gives up and waits for the next one.
MAX_CALLS = 20
# Grab outcomes that the script gives only after it found the buyer registered.
_REGISTERED = frozenset({"granted", "space_taken", "limit_reached", "unknown_space"})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _set_bits(bitmap: bytes) -> int:
    return int.from_bytes(bitmap, "big").bit_count()


class HeldView:
    """One generation of one sale, as last read from Redis."""

    __slots__ = (
        "at_limit",
        "bitmap",
        "closes_ms",
        "complete",
        "ended",
        "generation",
        "held",
        "holders",
        "holding",
        "last_id",
        "opens_ms",
        "positions",
        "received_at",
        "redis_ms",
        "registered",
        "sent_at",
        "state",
        "version",
    )

    def __init__(
        self,
        reply: list[Any],
        positions: dict[str, int],
        sent_at: float,
        received_at: float,
    ) -> None:
        # reply: "full", now, version, state, bitmap, last id, generation,
        # opens_ms, closes_ms, [buyer, ...]
        self.generation = _text(reply[6])
        self.opens_ms = int(reply[7])
        self.closes_ms = int(reply[8])
        # Each label's position in the bitmap, for this generation.
        self.positions = positions
        # Buyers with a hold, or who had one since the view was loaded.
        self.holding = {_text(buyer) for buyer in reply[9]}
        # The buyer of each label granted since the view was loaded.
        self.holders: dict[str, str] = {}
        # Buyers found registered, and at their limit, by the grab script.
        self.registered: set[str] = set()
        self.at_limit: dict[str, int] = {}
        # The number of times that holds were seen to end. Limits learnt
        # before an end may be out of date.
        self.ended = 0
        self.version = _text(reply[2])
        self.state = _text(reply[3])
        self.bitmap: bytes = reply[4] or b""
        self.held = _set_bits(self.bitmap)
        self.last_id = _text(reply[5])
        self.complete = True
        self.redis_ms = int(reply[1])
        self.sent_at = sent_at
        self.received_at = received_at

    def apply(self, reply: list[Any], sent_at: float, received_at: float) -> bool:
        """Take in a "same" or "changes" reply; return True if more remain."""
        self.redis_ms = int(reply[1])
        self.sent_at = sent_at
        self.received_at = received_at
        if reply[0] == b"same":
            self.state = _text(reply[2])
            return False
        # "changes", now, version, state, bitmap, last id, more, label, buyer...
        self.version = _text(reply[2])
        self.state = _text(reply[3])
        self.bitmap = reply[4] or b""
        self.last_id = _text(reply[5])
        granted = reply[7:]
        for i in range(0, len(granted), 2):
            label, buyer = _text(granted[i]), _text(granted[i + 1])
            self.holders[label] = buyer
            self.holding.add(buyer)
        held = _set_bits(self.bitmap)
        if held < self.held + len(granted) // 2:
            # Fewer spaces held than grants added: some hold ended (or was
            # handed to a waiting buyer), so a buyer's limit may have room.
            self.ended += 1
            self.at_limit.clear()
        self.held = held
        self.complete = not reply[6]
        return not self.complete

    def all_held(self, labels: list[str]) -> bool:
        """Check that every label exists and its bit is set."""
        positions, bitmap = self.positions, self.bitmap
        for label in labels:
            position = positions.get(label)
            if position is None:
                return False
            byte = position >> 3
            if byte >= len(bitmap) or not bitmap[byte] & (0x80 >> (position & 7)):
                return False
        return True


class HeldViews:
    """The views of every sale this worker has been asked to grab in."""

    def __init__(self, client: aioredis.Redis, max_age_seconds: float = 0.1) -> None:
        self.client = client
        self.max_age = max_age_seconds
        self._views: dict[int, HeldView] = {}
        # Each sale's generation and its label positions, read once per
        # generation: they change only when the sale is armed again.
        self._positions: dict[int, tuple[str, dict[str, int]]] = {}
        self._started: dict[int, float] = {}
        self._refreshing: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing = False

    def current(self, sale_id: int) -> HeldView | None:
        """Return the sale's view, starting a refresh when it is half its age."""
        view = self._views.get(sale_id)
        now = time.monotonic()
        if (
            sale_id not in self._refreshing
            and now - self._started.get(sale_id, -1e9) > self.max_age / 2
        ):
            self._started[sale_id] = now
            self._refreshing.add(sale_id)
            task = asyncio.get_running_loop().create_task(self.refresh(sale_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return view

    def decide(
        self, view: HeldView | None, buyer: str, labels: list[str]
    ) -> tuple[str, int] | None:
        """Return the grab script's outcome for this click, or None to run it.

        The outcome is ("space_taken", 0) or ("limit_reached", limit).
        """
        if view is None or not view.complete or view.state != "armed":
            return None
        now = time.monotonic()
        if now - view.sent_at > self.max_age:
            return None
        # The script ran between sending and receiving: bound its clock.
        if view.redis_ms + (now - view.received_at) * 1000 < view.opens_ms:
            return None
        if view.redis_ms + (now - view.sent_at) * 1000 >= view.closes_ms:
            return None
        if buyer not in view.registered or not view.all_held(labels):
            return None
        if buyer not in view.holding:
            return ("space_taken", 0)
        limit = view.at_limit.get(buyer)
        if limit is None:
            return None
        holders = view.holders
        for label in labels:
            holder = holders.get(label)
            if holder is None or holder == buyer:
                return None
        return ("limit_reached", limit)

    def record(
        self,
        sale_id: int,
        view: HeldView | None,
        ended: int,
        buyer: str,
        outcome: str,
        label: str = "",
        limit: int = 0,
    ) -> None:
        """Record the grab script's outcome for a click sent with `view` current.

        `ended` is `view.ended` when the click was sent.
        """
        if view is None or self._views.get(sale_id) is not view:
            return  # The view was replaced meanwhile, so the outcome may be older.
        if outcome in _REGISTERED:
            view.registered.add(buyer)
        if outcome == "granted":
            view.holding.add(buyer)
            view.holders[label] = buyer
        elif outcome == "limit_reached" and view.ended == ended:
            view.holding.add(buyer)
            view.at_limit[buyer] = limit

    async def _positions_of(
        self, keys: SaleKeys, generation: str
    ) -> dict[str, int] | None:
        """Return the label positions of `generation`, or None if it is gone.

        HSCAN reads the spaces hash in small steps, so a sale of 100,000
        spaces does not stall Redis. Only arming writes that hash, and it
        sets a new generation in the same transaction, so the positions
        belong to `generation` if it is still current after the scan.
        """
        cached = self._positions.get(keys.sale_id)
        if cached is not None and cached[0] == generation:
            return cached[1]
        positions = {}
        async for label, position in self.client.hscan_iter(keys.spaces, count=2000):
            positions[_text(label)] = int(position)
        current = await self.client.hget(keys.meta, "generation")
        if current is None or _text(current) != generation:
            return None
        self._positions[keys.sale_id] = (generation, positions)
        return positions

    async def refresh(self, sale_id: int) -> None:
        """Read the changes since the last refresh; on failure, drop the view."""
        keys = SaleKeys.for_sale(sale_id)
        try:
            for _ in range(MAX_CALLS):
                view = self._views.get(sale_id)
                sent_at = time.monotonic()
                reply = await scripts.VIEW(
                    self.client,
                    [keys.meta, keys.taken, keys.grants, keys.counts],
                    [
                        view.generation if view else "",
                        view.version if view else "",
                        view.last_id if view else "0-0",
                        BATCH,
                    ],
                )
                received_at = time.monotonic()
                self._failing = False
                if reply[0] == b"not_armed":
                    self._views.pop(sale_id, None)
                    self._positions.pop(sale_id, None)
                    return
                if reply[0] == b"full" or view is None:
                    positions = await self._positions_of(keys, _text(reply[6]))
                    if positions is not None:
                        self._views[sale_id] = HeldView(
                            reply, positions, sent_at, received_at
                        )
                        return
                    continue  # Armed again while the positions were read.
                if not view.apply(reply, sent_at, received_at):
                    return
            logger.warning("held_view_behind", extra={"sale_id": sale_id})
        except RedisError as exc:
            # Without a view every click runs the grab script, or fails with it.
            self._views.pop(sale_id, None)
            if not self._failing:
                logger.warning(
                    "held_view_unavailable",
                    extra={"sale_id": sale_id, "error": repr(exc)},
                )
            self._failing = True
        finally:
            self._refreshing.discard(sale_id)
