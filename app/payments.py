"""Confirming a payment at the sales office, which issues the queue number.

One transaction locks the hold, checks it is held and not overdue, takes the
sale's next queue number from its `queue_counters` row (locked in the same
transaction), marks the hold paid and writes the audit entry. A rollback at
any point also returns the number, so numbers are strictly increasing per
sale with no gaps. Locks are always taken hold first, counter second, so
concurrent cashiers cannot deadlock.
"""

from __future__ import annotations

import dataclasses

import asyncpg

from app import audit
from app.errors import (
    AlreadyPaid,
    AmountMismatch,
    BadRequest,
    DuplicateNumber,
    Forbidden,
    HoldExpired,
)
from app.hold_locks import LockedHold, lock_hold, refuse_if_ended
from app.holds import format_queue_no
from app.staff import StaffMember
from app.types import DbPool

METHODS = ("cash", "card", "transfer")


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentRequest:
    amount_fen: int
    method: str
    receipt_no: str
    override_reason: str | None = None

    def validate(self) -> None:
        """Raise `BadRequest` naming the first field that is not acceptable."""
        if self.amount_fen <= 0:
            raise BadRequest(
                f"amount_fen must be a positive number of fen, got {self.amount_fen}.",
                field="amount_fen",
            )
        if self.method not in METHODS:
            raise BadRequest(
                f"method must be one of {', '.join(METHODS)}, got {self.method!r}.",
                field="method",
            )


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentResult:
    hold: LockedHold
    queue_no: str
    repeated: bool


def _check_amount(
    hold: LockedHold, request: PaymentRequest, member: StaffMember
) -> None:
    if request.amount_fen == hold.price_fen:
        return
    if request.override_reason is None:
        raise AmountMismatch(
            f"The amount due for {hold.label} is {hold.price_fen} fen, but "
            f"{request.amount_fen} fen was entered; correct the amount, or ask "
            "a manager to override it with a reason.",
            field="amount_fen",
            amount_due_fen=hold.price_fen,
        )
    if not member.is_manager:
        raise Forbidden(
            "Only a manager can accept an amount other than the amount due; "
            f"{member.username!r} is a {member.role}."
        )


def _repeat(hold: LockedHold, request: PaymentRequest) -> PaymentResult:
    """Return the first result again, unless the receipt shows another payment."""
    queue_no = format_queue_no(hold.queue_no) or ""
    if hold.receipt_no != request.receipt_no:
        raise AlreadyPaid(
            f"Hold {hold.id} on {hold.label} is already paid with receipt "
            f"{hold.receipt_no!r} (queue number {queue_no}).",
            hold=hold.id,
            queue_no=queue_no,
        )
    return PaymentResult(hold, queue_no, repeated=True)


async def confirm_payment(
    pool: DbPool, hold_id: str, request: PaymentRequest, member: StaffMember
) -> PaymentResult:
    """Mark the hold paid and issue the sale's next queue number.

    Repeating it with the same receipt number returns the first number and
    changes nothing. Raises `UnknownHold`, `HoldExpired`, `HoldCancelled`,
    `AlreadyPaid`, `AmountMismatch`, `Forbidden` or `DuplicateNumber`.
    """
    request.validate()
    async with pool.acquire() as connection, connection.transaction():
        hold = await lock_hold(connection, hold_id)
        if hold.status in ("paid", "signed"):
            return _repeat(hold, request)
        refuse_if_ended(hold)
        if hold.overdue:
            raise HoldExpired(
                f"Hold {hold.id} on {hold.label} passed its payment deadline "
                f"{hold.deadline.isoformat()}; it can no longer be paid.",
                hold=hold.id,
                status="expired",
            )
        _check_amount(hold, request, member)

        queue_no = await connection.fetchval(
            """
            INSERT INTO queue_counters (sale_id, last_no) VALUES ($1, 1)
            ON CONFLICT (sale_id)
            DO UPDATE SET last_no = queue_counters.last_no + 1
            RETURNING last_no
            """,
            hold.sale_id,
        )
        try:
            row = await connection.fetchrow(
                """
                UPDATE holds h
                SET status = 'paid', paid_fen = $2, payment_method = $3,
                    receipt_no = $4, paid_at = clock_timestamp(), paid_by = $5,
                    queue_no = $6
                FROM spaces s, registrants r
                WHERE h.id = $1 AND s.id = h.space_id AND r.id = h.registrant_id
                RETURNING h.*, s.label, r.registration_no, false AS overdue
                """,
                hold.id,
                request.amount_fen,
                request.method,
                request.receipt_no,
                member.username,
                queue_no,
            )
        except asyncpg.UniqueViolationError:
            raise DuplicateNumber(
                f"Receipt {request.receipt_no!r} is already recorded for another "
                "hold of this sale; check the receipt number.",
                field="receipt_no",
            ) from None
        assert row is not None
        paid = LockedHold.from_record(row)
        after = paid.audit_state()
        if request.amount_fen != hold.price_fen:
            after["override_reason"] = request.override_reason
            after["amount_due_fen"] = hold.price_fen
        await audit.record(
            connection,
            hold.sale_id,
            member.actor,
            "payment_confirmed",
            hold.id,
            before=hold.audit_state(),
            after=after,
        )
    return PaymentResult(paid, format_queue_no(queue_no) or "", repeated=False)
