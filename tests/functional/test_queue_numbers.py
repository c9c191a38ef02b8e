"""Queue numbers under concurrent cashiers: 001 to 200, each issued once."""

from __future__ import annotations

import asyncio
import random

import httpx

from app import audit
from app.settings import Settings
from tests.conftest import LiveServer
from tests.office import add_member, grab_spaces, login, stores
from tests.support import make_sale, run

HOLDS = 200
CASHIERS = 4


async def confirm_all(
    url: str, headers: dict[str, str], holds: list[str], seed: int
) -> dict[str, set[str]]:
    """Confirm every hold in a random order; return the numbers seen per hold."""
    order = holds[:]
    random.Random(seed).shuffle(order)
    seen: dict[str, set[str]] = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        for hold in order:
            response = await client.post(
                f"/api/staff/holds/{hold}/payment",
                json={
                    "amount_fen": 1_000_000,
                    "method": "card",
                    "receipt_no": f"R-{hold}",
                },
            )
            assert response.status_code in (200, 201), response.text
            seen.setdefault(hold, set()).add(response.json()["queue_no"])
    return seen


def test_four_cashiers_issue_each_number_once(
    http: httpx.Client, live_server: LiveServer, settings: Settings
) -> None:
    setup = run(make_sale(settings, spaces=HOLDS, buyers=HOLDS))

    async def prepare() -> list[str]:
        async with stores(settings) as (pool, store):
            return await grab_spaces(pool, store, setup, HOLDS)

    holds = run(prepare())
    cashiers = [
        login(http, run(add_member(settings, "cashier"))) for _ in range(CASHIERS)
    ]

    async def all_cashiers() -> list[dict[str, set[str]]]:
        return await asyncio.gather(
            *(
                confirm_all(live_server.url, headers, holds, seed)
                for seed, headers in enumerate(cashiers)
            )
        )

    # Every cashier confirms every hold: one confirmation and three retries each.
    results = run(all_cashiers())

    numbers: dict[str, set[str]] = {}
    for seen in results:
        for hold, values in seen.items():
            numbers.setdefault(hold, set()).update(values)
    assert all(len(values) == 1 for values in numbers.values())
    issued = sorted(next(iter(values)) for values in numbers.values())
    assert issued == [f"{n:03d}" for n in range(1, HOLDS + 1)]

    async def recorded() -> tuple[list[int], int, int]:
        async with stores(settings, max_size=1) as (pool, _):
            by_time = await pool.fetch(
                """
                SELECT queue_no FROM holds WHERE sale_id = $1
                ORDER BY paid_at, queue_no
                """,
                setup.sale.id,
            )
            audited = await pool.fetchval(
                """
                SELECT count(*) FROM audit_log
                WHERE sale_id = $1 AND action = 'payment_confirmed'
                """,
                setup.sale.id,
            )
            counter = await pool.fetchval(
                "SELECT last_no FROM queue_counters WHERE sale_id = $1", setup.sale.id
            )
            verdict = await audit.verify_chain(pool, setup.sale.id)
            assert verdict.problem is None
            return [row["queue_no"] for row in by_time], audited, counter

    in_payment_order, audited, counter = run(recorded())
    # Numbers follow the order of confirmation.
    assert in_payment_order == list(range(1, HOLDS + 1))
    assert audited == HOLDS
    assert counter == HOLDS
