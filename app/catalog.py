"""A per-worker cache of each sale's record and spaces, read from Postgres.

Spaces cannot change once a sale is armed, so they are reloaded only when
the sale's generation changes; the sale record itself is re-read after
`ttl_seconds` so that a pause or a re-arm is seen quickly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import orjson

from app.sales import Sale, Space, get_sale, list_spaces
from app.types import DbPool


@dataclasses.dataclass(frozen=True, slots=True)
class SaleView:
    sale: Sale
    spaces: tuple[Space, ...]
    by_label: dict[str, Space]
    spaces_json: bytes
    loaded_at: float


def _space_json(space: Space) -> dict[str, object]:
    return {
        "label": space.label,
        "zone": space.zone,
        "level": space.level,
        "kind": space.kind,
        "price_fen": space.price_fen,
        "price_yuan": space.price_fen / 100,
        "position": space.position,
    }


class Catalog:
    def __init__(self, pool: DbPool, ttl_seconds: float = 2.0):
        self.pool = pool
        self.ttl_seconds = ttl_seconds
        self._views: dict[int, SaleView] = {}
        self._loading: dict[int, asyncio.Task[SaleView]] = {}

    def cached(self, sale_id: int) -> SaleView | None:
        """Return the last view of the sale, however old, without any I/O."""
        return self._views.get(sale_id)

    async def view(self, sale_id: int) -> SaleView:
        """Return a fresh enough view; raises `UnknownSale` or Postgres errors.

        One load per sale runs at a time: while it runs, callers get the
        previous view if there is one, and otherwise wait for the load.
        """
        old = self._views.get(sale_id)
        if old is not None and time.monotonic() - old.loaded_at < self.ttl_seconds:
            return old
        loading = self._loading.get(sale_id)
        if loading is None:
            loading = asyncio.create_task(self._load(sale_id, old))
            self._loading[sale_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(sale_id, None))
        if old is not None and not loading.done():
            return old
        # Shielded, so a caller's timeout does not cancel the shared load.
        return await asyncio.shield(loading)

    async def _load(self, sale_id: int, old: SaleView | None) -> SaleView:
        sale = await get_sale(self.pool, sale_id)
        now = time.monotonic()
        if (
            old is not None
            and old.sale.generation == sale.generation
            and sale.state != "draft"
        ):
            # Spaces cannot change after arming: keep the built indexes.
            view = dataclasses.replace(old, sale=sale, loaded_at=now)
        else:
            spaces = tuple(await list_spaces(self.pool, sale_id))
            view = SaleView(
                sale=sale,
                spaces=spaces,
                by_label={space.label: space for space in spaces},
                spaces_json=orjson.dumps(
                    {"sale": sale_id, "spaces": [_space_json(s) for s in spaces]}
                ),
                loaded_at=now,
            )
        self._views[sale_id] = view
        return view

    async def view_or_stale(self, sale_id: int, wait_seconds: float) -> SaleView | None:
        """Return a fresh view, or the last one when Postgres fails or is slow.

        Returns None only when Postgres fails and nothing is cached yet. Raises
        `UnknownSale` when Postgres answers that the sale does not exist.
        """
        try:
            return await asyncio.wait_for(self.view(sale_id), wait_seconds)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return self._views.get(sale_id)
