"""Payments on real Postgres: repeats record nothing, numbers follow order."""

from __future__ import annotations

import pytest

from app import errors
from app.payments import PaymentRequest, confirm_payment
from app.settings import Settings
from tests.office import add_member, grab_spaces, hold_row, make_overdue, stores
from tests.support import make_sale, run

PRICE_FEN = 1_000_000


def test_repeat_records_nothing_new(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=2))
    cashier = run(add_member(settings, "cashier"))

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 1)
            request = PaymentRequest(PRICE_FEN, "card", "R-100")
            first = await confirm_payment(pool, holds[0], request, cashier)
            row = await hold_row(pool, holds[0])
            count = "SELECT count(*) FROM audit_log WHERE sale_id = $1"
            entries = await pool.fetchval(count, setup.sale.id)

            again = await confirm_payment(pool, holds[0], request, cashier)

            assert first.queue_no == "001"
            assert first.repeated is False
            assert again.queue_no == "001"
            assert again.repeated is True
            assert await hold_row(pool, holds[0]) == row
            assert await pool.fetchval(count, setup.sale.id) == entries

    run(scenario())


def test_override_audited_with_reason(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    manager = run(add_member(settings, "manager"))

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 1)
            request = PaymentRequest(900_000, "transfer", "T-1", "agreed discount")

            await confirm_payment(pool, holds[0], request, manager)

            after = await pool.fetchval(
                """
                SELECT after FROM audit_log
                WHERE subject = $1 AND action = 'payment_confirmed'
                """,
                holds[0],
            )
            assert '"override_reason": "agreed discount"' in after
            assert '"amount_due_fen": 1000000' in after
            assert '"paid_by"' in after

    run(scenario())


def test_overdue_hold_not_paid(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    cashier = run(add_member(settings, "cashier"))

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 1)
            await make_overdue(pool, holds)
            request = PaymentRequest(PRICE_FEN, "cash", "R-1")

            with pytest.raises(errors.HoldExpired, match="passed its payment deadline"):
                await confirm_payment(pool, holds[0], request, cashier)

            counter = await pool.fetchval(
                "SELECT last_no FROM queue_counters WHERE sale_id = $1",
                setup.sale.id,
            )
            assert counter is None

    run(scenario())


def test_bad_request_fields_rejected() -> None:
    with pytest.raises(errors.BadRequest, match="method"):
        PaymentRequest(PRICE_FEN, "cheque", "R-1").validate()
    with pytest.raises(errors.BadRequest, match="amount_fen"):
        PaymentRequest(0, "cash", "R-1").validate()
