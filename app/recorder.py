"""Group commit for winning grabs: one Postgres transaction per batch.

Every winning request needs its hold in Postgres before responding 201.
Recording each in its own transaction serialises them on the commit (and on
the sale's audit chain), so winners that arrive while a batch is being
written wait together and go into the next batch.
"""

from __future__ import annotations

import asyncio
import logging

from app.holds import Grant, record_grants
from app.types import DbPool

logger = logging.getLogger(__name__)

MAX_BATCH = 500


class GrantRecorder:
    """Records grants of any sale in batches, one batch in flight per worker."""

    def __init__(self, pool: DbPool, flush_timeout: float) -> None:
        self.pool = pool
        self.flush_timeout = flush_timeout
        self._waiting: list[tuple[Grant, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, grant: Grant) -> bool:
        """Return whether the grant is in Postgres; raises what Postgres raised.

        Cancelling the caller (for example on its timeout) leaves the grant in
        the batch: recording it anyway is harmless and the persister would
        record it too.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((grant, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            batch = self._waiting[:MAX_BATCH]
            del self._waiting[:MAX_BATCH]
            by_sale: dict[int, list[Grant]] = {}
            for grant, _ in batch:
                by_sale.setdefault(grant.sale_id, []).append(grant)
            try:
                present: set[str] = set()
                for sale_id, grants in by_sale.items():
                    present |= await asyncio.wait_for(
                        record_grants(self.pool, sale_id, grants), self.flush_timeout
                    )
            except Exception as exc:
                # Every waiter gets the error, whatever it is, and decides.
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for grant, future in batch:
                if not future.done():
                    future.set_result(grant.hold_id in present)
