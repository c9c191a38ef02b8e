"""Locking one hold for a staff change, and refusing changes to ended holds.

Payment, contract, cancellation and expiry all change a hold only while
holding its row lock (`SELECT ... FOR UPDATE`), so when two of them race on
one hold, the second reads what the first wrote and is rejected with a reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import asyncpg

from app.errors import HoldCancelled, HoldExpired, UnknownHold
from app.types import DbConnection

_LOCK = """
    SELECT h.*, s.label, r.registration_no,
           h.deadline <= clock_timestamp() AS overdue
    FROM holds h
    JOIN spaces s ON s.id = h.space_id
    JOIN registrants r ON r.id = h.registrant_id
    WHERE h.id = $1
    FOR UPDATE OF h
"""


@dataclasses.dataclass(frozen=True, slots=True)
class LockedHold:
    """A hold row, read under its lock, with its space label and buyer."""

    id: str
    sale_id: int
    status: str
    label: str
    registration_no: str
    deadline: dt.datetime
    overdue: bool
    price_fen: int
    paid_fen: int | None
    payment_method: str | None
    receipt_no: str | None
    paid_at: dt.datetime | None
    paid_by: str | None
    queue_no: int | None
    contract_no: str | None
    signed_at: dt.datetime | None
    ended_at: dt.datetime | None
    end_reason: str | None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> LockedHold:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: row[name] for name in names})

    def audit_state(self) -> dict[str, Any]:
        """Return the fields staff change, for the audit log's before/after."""
        return {
            "status": self.status,
            "paid_fen": self.paid_fen,
            "payment_method": self.payment_method,
            "receipt_no": self.receipt_no,
            "paid_by": self.paid_by,
            "queue_no": self.queue_no,
            "contract_no": self.contract_no,
            "end_reason": self.end_reason,
        }


async def lock_hold(connection: DbConnection, hold_id: str) -> LockedHold:
    """Lock the hold's row until the transaction ends; raise `UnknownHold`."""
    row = await connection.fetchrow(_LOCK, hold_id)
    if row is None:
        raise UnknownHold(
            f"Hold {hold_id!r} does not exist; search for it by space, "
            "registration number, name or phone."
        )
    return LockedHold.from_record(row)


def refuse_if_ended(hold: LockedHold) -> None:
    """Raise `HoldExpired` or `HoldCancelled` for a hold that has ended."""
    ended = hold.ended_at.isoformat() if hold.ended_at else "earlier"
    if hold.status == "expired":
        raise HoldExpired(
            f"Hold {hold.id} on {hold.label} expired at {ended} because it was "
            f"not paid by {hold.deadline.isoformat()}; the space has been released.",
            hold=hold.id,
            status=hold.status,
        )
    if hold.status == "cancelled":
        raise HoldCancelled(
            f"Hold {hold.id} on {hold.label} was cancelled at {ended} "
            f"({hold.end_reason}).",
            hold=hold.id,
            status=hold.status,
        )
