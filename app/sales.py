"""Sales, spaces and registrants as stored in Postgres."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import asyncpg

from app.errors import BadRequest, UnknownSale
from app.inputs import check_plain_text
from app.types import DbExecutor

KINDS = ("standard", "large", "ev_charging", "tandem")
_ZONE = re.compile(r"[A-Za-z0-9_-]{1,16}")
# Launch times must fall in these years, in UTC. A far year such as 9999
# overflows datetime when converted to UTC.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2201, 1, 1, tzinfo=dt.UTC)
# The shortest payment window, so that a winner has time to reach the office.
MIN_PAYMENT_HOURS = 0.5
MAX_PAYMENT_HOURS = 24 * 90


@dataclasses.dataclass(frozen=True, slots=True)
class Sale:
    id: int
    name: str
    zones: tuple[str, ...]
    opens_at: dt.datetime
    closes_at: dt.datetime
    buyer_limit: int
    payment_window: dt.timedelta
    state: str
    generation: int

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Sale:
        return cls(
            id=row["id"],
            name=row["name"],
            zones=tuple(row["zones"]),
            opens_at=row["opens_at"],
            closes_at=row["closes_at"],
            buyer_limit=row["buyer_limit"],
            payment_window=row["payment_window"],
            state=row["state"],
            generation=row["generation"],
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Space:
    id: int
    position: int
    label: str
    zone: str
    level: str
    kind: str
    price_fen: int

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Space:
        return cls(
            id=row["id"],
            position=row["position"],
            label=row["label"],
            zone=row["zone"],
            level=row["level"],
            kind=row["kind"],
            price_fen=row["price_fen"],
        )


def validate_sale_fields(
    name: str,
    zones: list[str],
    opens_at: dt.datetime,
    closes_at: dt.datetime,
    buyer_limit: int,
    payment_hours: float,
) -> None:
    """Raise `BadRequest` naming the first field that is not acceptable."""
    if not name.strip() or len(name) > 200:
        raise BadRequest("name must have 1 to 200 characters.", field="name")
    check_plain_text(name, "name")
    bad_zones = [zone for zone in zones if not _ZONE.fullmatch(zone)]
    if not zones or bad_zones:
        found = f", got {bad_zones[0]!r}" if bad_zones else ""
        raise BadRequest(
            "zones must list at least one zone of 1 to 16 letters, digits, '_' "
            f"or '-', for example A,B,C{found}.",
            field="zones",
        )
    if len(set(zones)) != len(zones):
        raise BadRequest("zones must not repeat a zone.", field="zones")
    if opens_at.tzinfo is None or closes_at.tzinfo is None:
        raise BadRequest("opens_at and closes_at need a time zone.", field="opens_at")
    for field, moment in (("opens_at", opens_at), ("closes_at", closes_at)):
        if not EARLIEST <= moment < LATEST:
            raise BadRequest(
                f"{field} must be in the years 2000 to 2200 in UTC, got "
                f"{moment.isoformat()}.",
                field=field,
            )
    if closes_at <= opens_at:
        raise BadRequest("closes_at must be later than opens_at.", field="closes_at")
    if not 1 <= buyer_limit <= 100:
        raise BadRequest(
            f"limit must be between 1 and 100, got {buyer_limit}.", field="limit"
        )
    if not MIN_PAYMENT_HOURS <= payment_hours <= MAX_PAYMENT_HOURS:
        raise BadRequest(
            f"payment_hours must be from {MIN_PAYMENT_HOURS} to {MAX_PAYMENT_HOURS}, "
            f"got {payment_hours}.",
            field="payment_hours",
        )


async def create_sale(
    db: DbExecutor,
    name: str,
    zones: list[str],
    opens_at: dt.datetime,
    closes_at: dt.datetime,
    buyer_limit: int = 1,
    payment_hours: float = 48.0,
) -> Sale:
    """Insert a sale in state draft; raises `BadRequest` on a bad field."""
    validate_sale_fields(name, zones, opens_at, closes_at, buyer_limit, payment_hours)
    row = await db.fetchrow(
        """
        INSERT INTO sales (name, zones, opens_at, closes_at, buyer_limit,
                           payment_window)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING *
        """,
        name.strip(),
        [zone.strip() for zone in zones],
        opens_at,
        closes_at,
        buyer_limit,
        dt.timedelta(hours=payment_hours),
    )
    assert row is not None
    return Sale.from_record(row)


async def get_sale(db: DbExecutor, sale_id: int) -> Sale:
    """Return the sale or raise `UnknownSale`."""
    row = await db.fetchrow("SELECT * FROM sales WHERE id = $1", sale_id)
    if row is None:
        raise UnknownSale(f"Sale {sale_id} does not exist.")
    return Sale.from_record(row)


async def list_spaces(db: DbExecutor, sale_id: int) -> list[Space]:
    """Return the sale's spaces in bitmap order."""
    rows = await db.fetch(
        "SELECT * FROM spaces WHERE sale_id = $1 ORDER BY position", sale_id
    )
    return [Space.from_record(row) for row in rows]
