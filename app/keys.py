"""Names of the Redis keys of one sale.

Every key of a sale carries the hash tag `{sale:<id>}`, so they all live in
one slot and each Lua script runs unchanged on Redis Cluster.
"""

from __future__ import annotations

import dataclasses
import functools

# Ids of the sales that a persister should drain; outside any sale's slot.
ARMED_SALES = "parking:armed-sales"


@dataclasses.dataclass(frozen=True, slots=True)
class SaleKeys:
    sale_id: int
    meta: str
    spaces: str
    taken: str
    holders: str
    limits: str
    counts: str
    grants: str

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def for_sale(sale_id: int) -> SaleKeys:
        """Return the sale's key names, cached because every grab needs them."""
        tag = f"{{sale:{sale_id}}}"
        return SaleKeys(
            sale_id=sale_id,
            meta=f"{tag}:meta",
            spaces=f"{tag}:spaces",
            taken=f"{tag}:taken",
            holders=f"{tag}:holders",
            limits=f"{tag}:limits",
            counts=f"{tag}:counts",
            grants=f"{tag}:grants",
        )

    def idempotency(self, registration_no: str, key: str) -> str:
        return f"{{sale:{self.sale_id}}}:idem:{registration_no}:{key}"

    def all_data(self) -> tuple[str, ...]:
        """Return the keys that arming replaces (not the grant stream)."""
        return (
            self.meta,
            self.spaces,
            self.taken,
            self.holders,
            self.limits,
            self.counts,
        )
