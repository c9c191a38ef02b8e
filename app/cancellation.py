"""Cancelling a hold at a manager's request, with a reason.

A cancellation names the status the manager saw (`expected_status`, "held"
unless given). If the hold changed in between, for example a cashier
confirmed its payment a moment earlier, the cancellation is refused with
`HoldChanged`, so a payment and a cancellation racing on one hold have
exactly one winner. Cancelling a paid hold therefore needs
`expected_status="paid"`, which also confirms that the money must be refunded. A
signed hold cannot be cancelled. The record is kept, with its queue number.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from app import audit
from app.database import DB_ERRORS
from app.errors import BadRequest, HoldChanged, HoldSigned
from app.hold_locks import LockedHold, lock_hold, refuse_if_ended
from app.redis_store import RedisStore
from app.releases import ended_holds, free_space
from app.staff import StaffMember
from app.types import DbPool
from app.waiting_list import lapse_offers

logger = logging.getLogger(__name__)

CANCELLABLE = ("held", "paid")


def _changed_message(hold: LockedHold, expected_status: str) -> str:
    message = (
        f"Hold {hold.id} on {hold.label} is {hold.status} now, not {expected_status}"
    )
    if hold.status == "paid" and hold.paid_at is not None:
        message += (
            f": {hold.paid_by} confirmed its payment at {hold.paid_at.isoformat()} "
            f"(queue number {hold.queue_no:03d})"
        )
    return message + ". Look at the hold again before cancelling it."


async def cancel_hold(
    pool: DbPool,
    store: RedisStore,
    hold_id: str,
    reason: str,
    member: StaffMember,
    expected_status: str = "held",
) -> LockedHold:
    """End the hold as cancelled, then free its space; return the hold.

    Raises `UnknownHold`, `HoldSigned`, `HoldExpired`, `HoldCancelled` or
    `HoldChanged`. The caller must have checked that `member` is a manager.
    """
    if expected_status not in CANCELLABLE:
        raise BadRequest(
            f"expected_status must be held or paid, got {expected_status!r}.",
            field="expected_status",
        )
    async with pool.acquire() as connection, connection.transaction():
        hold = await lock_hold(connection, hold_id)
        if hold.status == "signed":
            raise HoldSigned(
                f"Hold {hold.id} on {hold.label} is signed (contract "
                f"{hold.contract_no}); a signed hold cannot be cancelled here.",
                hold=hold.id,
                status=hold.status,
            )
        refuse_if_ended(hold)
        if hold.status != expected_status:
            raise HoldChanged(
                _changed_message(hold, expected_status),
                hold=hold.id,
                status=hold.status,
            )
        row = await connection.fetchrow(
            """
            UPDATE holds h
            SET status = 'cancelled', ended_at = clock_timestamp(), end_reason = $2
            FROM spaces s, registrants r
            WHERE h.id = $1 AND s.id = h.space_id AND r.id = h.registrant_id
            RETURNING h.*, s.label, r.registration_no, false AS overdue
            """,
            hold.id,
            f"cancelled by {member.username}: {reason}",
        )
        assert row is not None
        cancelled = LockedHold.from_record(row)
        await lapse_offers(connection, [hold.id])
        await audit.record(
            connection,
            hold.sale_id,
            member.actor,
            "hold_cancelled",
            hold.id,
            before=hold.audit_state(),
            after={**cancelled.audit_state(), "reason": reason},
        )

    try:
        for ended in await ended_holds(pool, [hold.id]):
            await free_space(pool, store, ended)
    except (RedisError, *DB_ERRORS) as exc:
        # The cancellation is committed, and the expirer's sweep frees the space.
        logger.warning(
            "space_not_freed",
            extra={"hold": hold.id, "sale_id": hold.sale_id, "error": repr(exc)},
        )
    return cancelled
