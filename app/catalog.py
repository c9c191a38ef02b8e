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

    def cached(self, sale_id: int) -> SaleView | None:
        """Return the last view of the sale, however old, without any I/O."""
        return self._views.get(sale_id)

    async def view(self, sale_id: int) -> SaleView:
        """Return a fresh enough view; raises `UnknownSale` or Postgres errors."""
        now = time.monotonic()
        old = self._views.get(sale_id)
        if old is not None and now - old.loaded_at < self.ttl_seconds:
            return old
        sale = await get_sale(self.pool, sale_id)
        if (
            old is not None
            and old.sale.generation == sale.generation
            and sale.state != "draft"
        ):
            spaces = old.spaces
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
