"""Recording the signed contract of a paid hold."""

from __future__ import annotations

import asyncpg

from app import audit
from app.errors import AlreadySigned, DuplicateNumber, HoldNotPaid
from app.hold_locks import LockedHold, lock_hold, refuse_if_ended
from app.staff import StaffMember
from app.types import DbPool


async def record_contract(
    pool: DbPool, hold_id: str, contract_no: str, member: StaffMember
) -> tuple[LockedHold, bool]:
    """Mark a paid hold signed; return the hold and whether this was a repeat.

    Repeating it with the same contract number changes nothing. Raises
    `UnknownHold`, `HoldNotPaid`, `HoldExpired`, `HoldCancelled`,
    `AlreadySigned` or `DuplicateNumber`.
    """
    async with pool.acquire() as connection, connection.transaction():
        hold = await lock_hold(connection, hold_id)
        if hold.status == "signed":
            if hold.contract_no == contract_no:
                return hold, True
            raise AlreadySigned(
                f"Hold {hold.id} on {hold.label} is already signed with contract "
                f"{hold.contract_no!r}.",
                hold=hold.id,
            )
        refuse_if_ended(hold)
        if hold.status != "paid":
            raise HoldNotPaid(
                f"Hold {hold.id} on {hold.label} is not paid yet; confirm the "
                "payment before recording the contract.",
                hold=hold.id,
                status=hold.status,
            )
        try:
            row = await connection.fetchrow(
                """
                UPDATE holds h
                SET status = 'signed', contract_no = $2, signed_at = clock_timestamp()
                FROM spaces s, registrants r
                WHERE h.id = $1 AND s.id = h.space_id AND r.id = h.registrant_id
                RETURNING h.*, s.label, r.registration_no, false AS overdue
                """,
                hold.id,
                contract_no,
            )
        except asyncpg.UniqueViolationError:
            raise DuplicateNumber(
                f"Contract {contract_no!r} is already recorded for another hold of "
                "this sale; check the contract number.",
                field="contract_no",
            ) from None
        assert row is not None
        signed = LockedHold.from_record(row)
        await audit.record(
            connection,
            hold.sale_id,
            member.actor,
            "contract_signed",
            hold.id,
            before=hold.audit_state(),
            after=signed.audit_state(),
        )
    return signed, False
