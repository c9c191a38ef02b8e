"""The public results of a closed sale: each sold space and its masked winner.

Anyone may read the results, so names and registration numbers are masked
here, before they leave the database layer, and nothing else about a buyer is
selected.
"""

from __future__ import annotations

import dataclasses

from app.types import DbExecutor

# Statuses of a hold that still owns its space after the sale.
LIVE_STATUSES = ("held", "paid", "signed")
# At most this many stars replace the hidden part, so long values do not
# show their length and the table stays narrow.
MAX_STARS = 3


@dataclasses.dataclass(frozen=True, slots=True)
class SoldSpace:
    label: str
    zone: str
    level: str
    price_fen: int
    status: str
    masked_name: str
    masked_registration_no: str


def mask_name(name: str) -> str:
    """Mask a name but for its first character and, from three on, its last.

    'Zhang' becomes 'Z***g' and a two-character name keeps only its first.
    Longer names get no more than `MAX_STARS` stars.
    """
    name = name.strip()
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * min(len(name) - 2, MAX_STARS) + name[-1]


def mask_registration_no(number: str) -> str:
    """Replace all but the last four characters with at most `MAX_STARS` stars.

    The visible tail lets a buyer find their own line. Numbers of six
    characters or fewer keep only `len - 3` characters visible.
    """
    visible = 4 if len(number) > 6 else max(0, len(number) - 3)
    stars = min(len(number) - visible, MAX_STARS)
    return "*" * stars + number[len(number) - visible :]


async def sold_spaces(db: DbExecutor, sale_id: int) -> list[SoldSpace]:
    """Return the sale's spaces that have a live hold, in plan order."""
    rows = await db.fetch(
        """
        SELECT s.label, s.zone, s.level, h.price_fen, h.status,
               r.name, r.registration_no
        FROM holds h
        JOIN spaces s ON s.id = h.space_id
        JOIN registrants r ON r.id = h.registrant_id
        WHERE h.sale_id = $1 AND h.status = ANY($2::text[])
        ORDER BY s.position
        """,
        sale_id,
        list(LIVE_STATUSES),
    )
    return [
        SoldSpace(
            label=row["label"],
            zone=row["zone"],
            level=row["level"],
            price_fen=row["price_fen"],
            status=row["status"],
            masked_name=mask_name(row["name"]),
            masked_registration_no=mask_registration_no(row["registration_no"]),
        )
        for row in rows
    ]
