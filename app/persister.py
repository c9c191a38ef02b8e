"""The persister: drains each armed sale's grant stream into Postgres.

It reads through the consumer group "persister", records each batch of
grants with one idempotent insert, and acknowledges only after the commit.
Entries left pending by a consumer that died are claimed after
`claim_idle_ms` and recorded again, which is harmless because the insert is
keyed by hold id. While Postgres is down it retries with a growing pause and
grabbing goes on; the backlog drains when Postgres returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app import metrics
from app.arming import GROUP, ensure_group
from app.holds import Grant, record_grants
from app.keys import ARMED_SALES, SaleKeys
from app.types import DbPool

logger = logging.getLogger(__name__)

StreamEntry = tuple[bytes, dict[bytes, bytes]]

# Errors a store raises while it is down or restarting; anything else is a bug.
STORE_ERRORS = (
    RedisError,
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def _stream_entries(reply: Any) -> list[StreamEntry]:
    """Return the entries of an XREADGROUP reply for one stream (RESP2 shape)."""
    if not reply:
        return []
    entries: list[StreamEntry] = reply[0][1]
    return entries


def raise_if_cancelling(exc: BaseException) -> None:
    """Re-raise a cancellation that a driver reported as its own error.

    A task cancelled while a client library waits on a socket may see that
    library's connection error instead of CancelledError; a retry loop that
    caught it would never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_entry(sale_id: int, fields: dict[bytes, bytes]) -> Grant:
    return Grant(
        hold_id=fields[b"hold"].decode(),
        sale_id=sale_id,
        label=fields[b"label"].decode(),
        registration_no=fields[b"buyer"].decode(),
        granted_ms=int(fields[b"granted_ms"]),
        deadline_ms=int(fields[b"deadline_ms"]),
    )


class Persister:
    def __init__(
        self,
        client: aioredis.Redis,
        pool: DbPool,
        consumer: str | None = None,
        batch_size: int = 500,
        claim_idle_ms: int = 5000,
        grace_ms: int = 0,
    ) -> None:
        self.client = client
        self.pool = pool
        self.consumer = consumer or consumer_name()
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms
        self.grace_ms = grace_ms
        self.recorded = 0
        # Sales whose drain failed, and when to try each of them again.
        self._retry_at: dict[int, tuple[float, float]] = {}

    async def _let_requests_record(self, entries: Sequence[StreamEntry]) -> None:
        """Wait until the newest entry is `grace_ms` old.

        The request that won a grant records it itself within moments, so
        recording very fresh entries here would mostly repeat that work and
        contend with it for the same rows.
        """
        if not self.grace_ms:
            return
        entry_id = entries[-1][0]
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        granted_ms = int(text.split("-", 1)[0])
        age_ms = time.time() * 1000 - granted_ms
        if age_ms < self.grace_ms:
            await asyncio.sleep(min(self.grace_ms, self.grace_ms - age_ms) / 1000)

    async def _record(self, sale_id: int, entries: Sequence[StreamEntry]) -> int:
        """Record entries in Postgres, then acknowledge those that are there."""
        keys = SaleKeys.for_sale(sale_id)
        await self._let_requests_record(entries)
        grants = [parse_entry(sale_id, fields) for _, fields in entries]
        present = await record_grants(self.pool, sale_id, grants, skip_known=True)
        done = [
            entry_id
            for (entry_id, _), grant in zip(entries, grants, strict=True)
            if grant.hold_id in present
        ]
        if len(done) < len(entries):
            missing = [g.hold_id for g in grants if g.hold_id not in present]
            logger.error(
                "grants_not_recordable",
                extra={"sale_id": sale_id, "holds": missing},
            )
        if done:
            await self.client.xack(keys.grants, GROUP, *done)
        self.recorded += len(done)
        return len(done)

    async def drain_sale(self, sale_id: int, block_ms: int | None = None) -> int:
        """Record every grant of one sale that is waiting; return how many."""
        keys = SaleKeys.for_sale(sale_id)
        await ensure_group(self.client, keys)
        total = 0

        # Entries another consumer read but never acknowledged.
        start = "0-0"
        while True:
            claimed = await self.client.xautoclaim(
                keys.grants,
                GROUP,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=start,
                count=self.batch_size,
            )
            start, entries = claimed[0], claimed[1]
            if entries:
                total += await self._record(sale_id, entries)
            if start in (b"0-0", "0-0"):
                break

        # Entries this consumer read earlier without acknowledging them. The
        # loop stops when a batch records nothing, so an entry that cannot be
        # recorded is logged once per pass instead of spinning here.
        while True:
            pending = await self.client.xreadgroup(
                GROUP, self.consumer, {keys.grants: "0"}, count=self.batch_size
            )
            entries = _stream_entries(pending)
            recorded = await self._record(sale_id, entries) if entries else 0
            total += recorded
            if recorded == 0:
                break

        while True:
            fresh = await self.client.xreadgroup(
                GROUP,
                self.consumer,
                {keys.grants: ">"},
                count=self.batch_size,
                block=block_ms,
            )
            entries = _stream_entries(fresh)
            if not entries:
                return total
            total += await self._record(sale_id, entries)
            block_ms = None

    async def drain_all(self) -> int:
        """Drain every armed sale once; return how many grants were recorded.

        A sale whose drain fails (for example on a grant that Postgres
        rejects) is logged and retried later with a growing pause, so it
        does not hold up the other sales. Errors reaching Redis itself, or
        Postgres on every sale, are raised to the caller.
        """
        total = 0
        failures: list[BaseException] = []
        members = await self.client.smembers(ARMED_SALES)
        now = time.monotonic()
        for member in members:
            sale_id = int(member)
            retry_at, pause = self._retry_at.get(sale_id, (0.0, 0.5))
            if now < retry_at:
                continue
            try:
                total += await self.drain_sale(sale_id)
            except RedisError:
                raise
            except STORE_ERRORS as exc:
                raise_if_cancelling(exc)
                failures.append(exc)
                self._retry_at[sale_id] = (now + pause, min(pause * 2, 30.0))
                metrics.count_store_error("postgres", "persist")
                logger.error(
                    "sale_drain_failed",
                    extra={"sale_id": sale_id, "error": repr(exc), "retry_in_s": pause},
                )
            else:
                self._retry_at.pop(sale_id, None)
        if failures and len(failures) == len(members):
            raise failures[0]
        return total

    async def run(self, idle_sleep: float = 0.05) -> None:
        """Drain forever; retry with a growing pause while a store is down."""
        logger.info("persister_started", extra={"consumer": self.consumer})
        backoff = 0.1
        while True:
            try:
                recorded = await self.drain_all()
                backoff = 0.1
                if not recorded:
                    await asyncio.sleep(idle_sleep)
            except STORE_ERRORS as exc:
                raise_if_cancelling(exc)
                store = "redis" if isinstance(exc, RedisError) else "postgres"
                metrics.count_store_error(store, "persist")
                logger.warning(
                    "persister_retrying",
                    extra={"error": repr(exc), "retry_in_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
