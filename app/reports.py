"""Reports for the office and for finance: live summary and CSV exports.

Both exports end with the audit chain's final hash, so the file handed to
finance or a notary can be checked against `parking-sale verify-audit`.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from app import audit
from app.types import DbExecutor

_SUMMARY = """
    SELECT s.zone,
           count(*) AS spaces,
           count(*) FILTER (WHERE live.status IS NULL) AS free,
           count(*) FILTER (WHERE live.status = 'held') AS held,
           count(*) FILTER (WHERE live.status = 'paid') AS paid,
           count(*) FILTER (WHERE live.status = 'signed') AS signed,
           coalesce(sum(live.paid_fen), 0)::bigint AS collected_fen
    FROM spaces s
    LEFT JOIN holds live ON live.space_id = s.id
                        AND live.status IN ('held', 'paid', 'signed')
    WHERE s.sale_id = $1
    GROUP BY s.zone
"""

_ENDED = """
    SELECT s.zone,
           count(*) FILTER (WHERE h.status = 'expired') AS expired,
           count(*) FILTER (WHERE h.status = 'cancelled') AS cancelled
    FROM holds h JOIN spaces s ON s.id = h.space_id
    WHERE h.sale_id = $1
    GROUP BY s.zone
"""

COUNTS = ("spaces", "free", "held", "paid", "signed", "expired", "cancelled")


async def summary(
    db: DbExecutor, sale_id: int, zones: tuple[str, ...]
) -> dict[str, Any]:
    """Return counts per zone and in total, and the amount collected.

    free/held/paid/signed count spaces by their live hold; expired and
    cancelled count holds that ended, so one space can appear in both.
    Collected is the sum paid on holds that are paid or signed.
    """
    live = {row["zone"]: row for row in await db.fetch(_SUMMARY, sale_id)}
    ended = {row["zone"]: row for row in await db.fetch(_ENDED, sale_id)}
    per_zone: list[dict[str, Any]] = []
    total: dict[str, int] = dict.fromkeys((*COUNTS, "collected_fen"), 0)
    for zone in zones:
        row: dict[str, int] = dict.fromkeys((*COUNTS, "collected_fen"), 0)
        if zone in live:
            for name in ("spaces", "free", "held", "paid", "signed", "collected_fen"):
                row[name] = int(live[zone][name])
        if zone in ended:
            row["expired"] = int(ended[zone]["expired"])
            row["cancelled"] = int(ended[zone]["cancelled"])
        for name, value in row.items():
            total[name] += value
        per_zone.append({"zone": zone, **row})
    return {
        "sale": sale_id,
        "zones": per_zone,
        "total": total,
        "collected_yuan": total["collected_fen"] / 100,
    }


EXPORT_COLUMNS = (
    "space",
    "zone",
    "level",
    "kind",
    "price_yuan",
    "hold",
    "status",
    "registration_no",
    "buyer_name",
    "phone",
    "granted_at",
    "deadline",
    "paid_yuan",
    "payment_method",
    "receipt_no",
    "paid_at",
    "paid_by",
    "queue_no",
    "contract_no",
    "signed_at",
    "ended_at",
    "end_reason",
)


def _iso(value: Any) -> str:
    return "" if value is None else str(value.isoformat())


def _yuan(fen: int | None) -> str:
    return "" if fen is None else f"{fen / 100:.2f}"


async def _trailer(db: DbExecutor, sale_id: int, writer: Any) -> None:
    entries, last_hash = await audit.final_hash(db, sale_id)
    writer.writerow([])
    writer.writerow(["# audit_entries", entries])
    writer.writerow(["# audit_final_hash", last_hash])


async def results_csv(db: DbExecutor, sale_id: int) -> str:
    """Return one row per hold (and per space never held), in space order."""
    rows = await db.fetch(
        """
        SELECT s.label, s.zone, s.level, s.kind, s.price_fen, h.id AS hold,
               h.status, r.registration_no, r.name, r.phone, h.granted_at,
               h.deadline, h.paid_fen, h.payment_method, h.receipt_no, h.paid_at,
               h.paid_by, h.queue_no, h.contract_no, h.signed_at, h.ended_at,
               h.end_reason
        FROM spaces s
        LEFT JOIN holds h ON h.space_id = s.id
        LEFT JOIN registrants r ON r.id = h.registrant_id
        WHERE s.sale_id = $1
        ORDER BY s.position, h.granted_at, h.id
        """,
        sale_id,
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row["label"],
                row["zone"],
                row["level"],
                row["kind"],
                _yuan(row["price_fen"]),
                row["hold"] or "",
                row["status"] or "free",
                row["registration_no"] or "",
                row["name"] or "",
                row["phone"] or "",
                _iso(row["granted_at"]),
                _iso(row["deadline"]),
                _yuan(row["paid_fen"]),
                row["payment_method"] or "",
                row["receipt_no"] or "",
                _iso(row["paid_at"]),
                row["paid_by"] or "",
                "" if row["queue_no"] is None else f"{row['queue_no']:03d}",
                row["contract_no"] or "",
                _iso(row["signed_at"]),
                _iso(row["ended_at"]),
                row["end_reason"] or "",
            ]
        )
    await _trailer(db, sale_id, writer)
    return out.getvalue()


AUDIT_COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "subject",
    "before",
    "after",
    "prev_hash",
    "hash",
)


async def audit_csv(db: DbExecutor, sale_id: int) -> str:
    """Return the sale's audit log in chain order, with the final hash."""
    rows = await db.fetch(
        """
        SELECT seq, at, actor, action, subject, before::text AS before_text,
               after::text AS after_text, prev_hash, hash
        FROM audit_log WHERE sale_id = $1 ORDER BY seq, id
        """,
        sale_id,
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(AUDIT_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row["seq"],
                _iso(row["at"]),
                row["actor"],
                row["action"],
                row["subject"],
                row["before_text"] or "",
                row["after_text"] or "",
                row["prev_hash"],
                row["hash"],
            ]
        )
    await _trailer(db, sale_id, writer)
    return out.getvalue()
