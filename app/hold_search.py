"""Finding holds for the sales office, and showing one with its history."""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg

from app import audit
from app.errors import BadRequest, UnknownHold
from app.holds import hold_json
from app.inputs import check_plain_text, is_ascii_digits
from app.types import DbExecutor

PAGE_SIZE = 50
STATUSES = ("held", "paid", "signed", "cancelled", "expired")

_SELECT = """
    SELECT h.*, s.label, s.zone, s.level, s.kind,
           r.registration_no, r.name, r.phone
    FROM holds h
    JOIN spaces s ON s.id = h.space_id
    JOIN registrants r ON r.id = h.registrant_id
"""


@dataclasses.dataclass(frozen=True, slots=True)
class HoldQuery:
    """A staff search: free text, status, zone and a 1-based page."""

    text: str = ""
    status: str | None = None
    zone: str | None = None
    page: int = 1
    # Set from a signed hold reference (the buyer's QR code); matches one hold.
    hold_id: str | None = None

    def validate(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise BadRequest(
                f"status must be one of {', '.join(STATUSES)}, got {self.status!r}.",
                field="status",
            )
        if not 1 <= self.page <= 100_000:
            raise BadRequest(
                f"page must be a whole number from 1, got {self.page}.", field="page"
            )
        if len(self.text) > 64:
            raise BadRequest("q must have at most 64 characters.", field="q")
        # The search strips surrounding white space, such as a scanner's line end.
        check_plain_text(self.text.strip(), "q")
        if self.zone is not None:
            check_plain_text(self.zone, "zone")


def staff_hold_json(row: asyncpg.Record) -> dict[str, Any]:
    """Return a hold as staff see it: the buyer's view plus buyer and payment."""
    body = hold_json(row)
    body.update(
        registration_no=row["registration_no"],
        buyer_name=row["name"],
        phone=row["phone"],
        paid_fen=row["paid_fen"],
        payment_method=row["payment_method"],
        receipt_no=row["receipt_no"],
        paid_by=row["paid_by"],
    )
    return body


async def search(db: DbExecutor, sale_id: int, query: HoldQuery) -> dict[str, Any]:
    """Return one page of the sale's holds matching the query, newest first.

    The text matches a space label or registration number (exactly or as a
    prefix, any case), part of a buyer's name, or, when it is four digits,
    the last four digits of the phone number. A `hold_id` matches that hold.
    """
    query.validate()
    text = query.text.strip()
    where = ["h.sale_id = $1"]
    args: list[Any] = [sale_id]
    if text:
        args.append(text)
        n = len(args)
        matches = [
            f"starts_with(upper(s.label), upper(${n}))",
            f"starts_with(upper(r.registration_no), upper(${n}))",
            f"strpos(lower(r.name), lower(${n})) > 0",
        ]
        if len(text) == 4 and is_ascii_digits(text):
            matches.append(f"right(r.phone, 4) = ${n}")
        where.append("(" + " OR ".join(matches) + ")")
    if query.hold_id is not None:
        args.append(query.hold_id)
        where.append(f"h.id = ${len(args)}")
    if query.status is not None:
        args.append(query.status)
        where.append(f"h.status = ${len(args)}")
    if query.zone is not None:
        args.append(query.zone)
        where.append(f"s.zone = ${len(args)}")
    condition = " AND ".join(where)

    total = await db.fetchval(
        f"""
        SELECT count(*) FROM holds h
        JOIN spaces s ON s.id = h.space_id
        JOIN registrants r ON r.id = h.registrant_id
        WHERE {condition}
        """,
        *args,
    )
    rows = await db.fetch(
        f"""{_SELECT} WHERE {condition}
        ORDER BY h.granted_at DESC, h.id DESC
        LIMIT {PAGE_SIZE} OFFSET {(query.page - 1) * PAGE_SIZE}
        """,
        *args,
    )
    return {
        "sale": sale_id,
        "page": query.page,
        "page_size": PAGE_SIZE,
        "total": total,
        "pages": max(1, -(-int(total) // PAGE_SIZE)),
        "holds": [staff_hold_json(row) for row in rows],
    }


async def hold_detail(db: DbExecutor, hold_id: str) -> dict[str, Any]:
    """Return one hold with buyer, space and audit history; raise `UnknownHold`."""
    row = await db.fetchrow(f"{_SELECT} WHERE h.id = $1", hold_id)
    if row is None:
        raise UnknownHold(f"Hold {hold_id!r} does not exist.")
    body = staff_hold_json(row)
    body["sale"] = row["sale_id"]
    body["history"] = await audit.history(db, hold_id)
    return body
