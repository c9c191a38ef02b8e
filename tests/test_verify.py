"""The verifier: a clean sale passes, and each planted violation is caught.

Each test plants one violation directly in Redis or Postgres. The sales are
taken off the persister's list of armed sales first, so the service's
persister in the same test run never tries to record a planted grant.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app import cli
from app.keys import ARMED_SALES, SaleKeys
from app.operations import connect
from app.persister import Persister
from app.redis_store import RedisStore
from app.settings import Settings
from app.types import DbConnection, DbExecutor, DbPool
from app.verify import (
    HoldResponse,
    VerifyError,
    VerifyReport,
    load_responses,
    verify_sale,
)
from tests.support import SaleSetup, make_sale, run

Scenario = Callable[[DbPool, aioredis.Redis, SaleSetup], Awaitable[VerifyReport]]


async def _grant(
    pool: DbPool, client: aioredis.Redis, setup: SaleSetup, buyer: int, label: str
) -> HoldResponse:
    """Grab `label` for one buyer through the real script and record it."""
    number = setup.buyers[buyer].registration_no
    store = RedisStore(client, 3600)
    reply = await store.grab(setup.sale.id, number, uuid.uuid4().hex, [label])
    assert reply.outcome == "granted", reply
    await Persister(client, pool, claim_idle_ms=0).drain_sale(setup.sale.id)
    return HoldResponse(setup.sale.id, reply.hold_id, label, number, 201)


@asynccontextmanager
async def _stores(
    settings: Settings,
) -> AsyncIterator[tuple[DbPool, aioredis.Redis, SaleSetup]]:
    setup = await make_sale(settings, spaces=5, buyers=3)
    async with connect(settings) as (pool, client):
        await client.srem(ARMED_SALES, setup.sale.id)
        yield pool, client, setup


def _verify(settings: Settings, scenario: Scenario) -> VerifyReport:
    async def main() -> VerifyReport:
        async with _stores(settings) as (pool, client, setup):
            return await scenario(pool, client, setup)

    return run(main())


async def _insert_hold(
    db: DbExecutor, setup: SaleSetup, hold_id: str, buyer: int, label: str
) -> None:
    await db.execute(
        """
        INSERT INTO holds (id, sale_id, space_id, registrant_id, granted_at,
                           deadline, price_fen)
        SELECT $2, $1, s.id, r.id, now(), now() + interval '48 hours', s.price_fen
        FROM spaces s, registrants r
        WHERE s.sale_id = $1 AND s.label = $3
          AND r.sale_id = $1 AND r.registration_no = $4
        """,
        setup.sale.id,
        hold_id,
        label,
        setup.buyers[buyer].registration_no,
    )


async def _queue_unique_constraint(connection: DbConnection) -> str:
    name: str = await connection.fetchval(
        """
        SELECT c.conname FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
        WHERE c.conrelid = 'holds'::regclass AND c.contype = 'u'
          AND a.attname = 'queue_no'
        """
    )
    return name


def test_verify_clean_sale_passes(settings: Settings) -> None:
    async def scenario(
        pool: DbPool, client: aioredis.Redis, setup: SaleSetup
    ) -> VerifyReport:
        first = await _grant(pool, client, setup, 0, "A-001")
        second = await _grant(pool, client, setup, 1, "A-002")
        await pool.execute(
            "UPDATE holds SET queue_no = $2, status = 'paid' WHERE id = $1",
            first.hold_id,
            1,
        )
        return await verify_sale(pool, client, setup.sale.id, [first, second])

    report = _verify(settings, scenario)

    assert report.passed, report.violations
    assert report.live_holds == 2
    assert report.responses[201] == 2
    assert report.queue_numbers == 1


def test_verify_space_twice_in_postgres(settings: Settings) -> None:
    # The partial unique index holds_one_live_per_space forbids a second live
    # hold, so the test drops it inside a transaction that it rolls back.
    async def scenario(
        pool: DbPool, client: aioredis.Redis, setup: SaleSetup
    ) -> VerifyReport:
        await _grant(pool, client, setup, 0, "A-001")
        async with pool.acquire() as connection:
            transaction = connection.transaction()
            await transaction.start()
            try:
                await connection.execute("DROP INDEX holds_one_live_per_space")
                await _insert_hold(connection, setup, f"{setup.sale.id}-90", 1, "A-001")
                return await verify_sale(connection, client, setup.sale.id)
            finally:
                await transaction.rollback()

    report = _verify(settings, scenario)

    held_twice = report.failed("space_held_twice")
    assert len(held_twice) == 1
    assert "space A-001 has 2 live holds in Postgres" in held_twice[0]


def test_verify_space_granted_twice_in_redis(settings: Settings) -> None:
    async def scenario(
        pool: DbPool, client: aioredis.Redis, setup: SaleSetup
    ) -> VerifyReport:
        await _grant(pool, client, setup, 0, "A-001")
        await client.xadd(
            SaleKeys.for_sale(setup.sale.id).grants,
            {
                "hold": f"{setup.sale.id}-91",
                "label": "A-001",
                "buyer": setup.buyers[1].registration_no,
                "granted_ms": 1,
                "deadline_ms": 2,
                "generation": 1,
            },
        )
        return await verify_sale(pool, client, setup.sale.id)

    report = _verify(settings, scenario)

    held_twice = report.failed("space_held_twice")
    assert held_twice == [
        "space A-001 was granted 2 times in Redis, but only 0 of its holds ended"
    ]


def test_verify_buyer_over_limit_in_postgres(settings: Settings) -> None:
    async def scenario(
        pool: DbPool, client: aioredis.Redis, setup: SaleSetup
    ) -> VerifyReport:
        await _grant(pool, client, setup, 0, "A-001")
        await _insert_hold(pool, setup, f"{setup.sale.id}-92", 0, "A-002")
        return await verify_sale(pool, client, setup.sale.id)

    report = _verify(settings, scenario)

    over = report.failed("buyer_over_limit")
    assert len(over) == 1
    assert "2 live holds in Postgres, limit 1" in over[0]


def test_verify_buyer_over_limit_in_redis(settings: Settings) -> None:
    async def scenario(
        pool: DbPool, client: aioredis.Redis, setup: SaleSetup
    ) -> VerifyReport:
        number = setup.buyers[2].registration_no
        await client.hset(SaleKeys.for_sale(setup.sale.id).counts, number, 2)
        return await verify_sale(pool, client, setup.sale.id)

    report = _verify(settings, scenario)

    over = report.failed("buyer_over_limit")
    assert over == [f"buyer T{report.sale_id}-0002 counts 2 holds in Redis, limit 1"]
    assert report.failed("stores_disagree")


def test_verify_response_without_hold(settings: Settings) -> None:
    async def scenario(
        pool: DbPool, client: aioredis.Redis, setup: SaleSetup
    ) -> VerifyReport:
        real = await _grant(pool, client, setup, 0, "A-001")
        number = setup.buyers[1].registration_no
        responses = [
            real,
            HoldResponse(setup.sale.id, f"{setup.sale.id}-93", "A-002", number, 201),
            HoldResponse(setup.sale.id, real.hold_id, "A-001", number, 201),
            HoldResponse(setup.sale.id + 1000, "other-sale", "A-001", number, 201),
        ]
        return await verify_sale(pool, client, setup.sale.id, responses)

    report = _verify(settings, scenario)

    unrecorded = report.failed("response_not_recorded")
    assert len(unrecorded) == 2
    assert unrecorded[0].endswith("but Postgres has no such hold")
    assert "but Postgres records it as A-001 for buyer" in unrecorded[1]
    assert report.responses[201] == 3


def test_verify_stores_disagree(settings: Settings) -> None:
    async def scenario(
        pool: DbPool, client: aioredis.Redis, setup: SaleSetup
    ) -> VerifyReport:
        await _grant(pool, client, setup, 0, "A-001")
        keys = SaleKeys.for_sale(setup.sale.id)
        await client.hset(keys.holders, "A-003", f"{setup.sale.id}-94")
        return await verify_sale(pool, client, setup.sale.id)

    report = _verify(settings, scenario)

    assert report.failed("stores_disagree") == [
        f"space A-003: Redis holds it for {report.sale_id}-94, Postgres has no "
        "live hold"
    ]
    assert not report.failed("space_held_twice")


def test_verify_queue_number_gap(settings: Settings) -> None:
    async def scenario(
        pool: DbPool, client: aioredis.Redis, setup: SaleSetup
    ) -> VerifyReport:
        first = await _grant(pool, client, setup, 0, "A-001")
        second = await _grant(pool, client, setup, 1, "A-002")
        for response, queue_no in ((first, 1), (second, 3)):
            await pool.execute(
                "UPDATE holds SET queue_no = $2 WHERE id = $1",
                response.hold_id,
                queue_no,
            )
        return await verify_sale(pool, client, setup.sale.id)

    report = _verify(settings, scenario)

    assert report.failed("queue_numbers") == [
        "queue numbers missing below the highest: 002"
    ]


def test_verify_queue_number_duplicate(settings: Settings) -> None:
    # UNIQUE (sale_id, queue_no) forbids the duplicate, so the test drops the
    # constraint inside a transaction that it rolls back.
    async def scenario(
        pool: DbPool, client: aioredis.Redis, setup: SaleSetup
    ) -> VerifyReport:
        first = await _grant(pool, client, setup, 0, "A-001")
        second = await _grant(pool, client, setup, 1, "A-002")
        async with pool.acquire() as connection:
            transaction = connection.transaction()
            await transaction.start()
            try:
                constraint = await _queue_unique_constraint(connection)
                await connection.execute(
                    f'ALTER TABLE holds DROP CONSTRAINT "{constraint}"'
                )
                await connection.execute(
                    "UPDATE holds SET queue_no = 1 WHERE id = ANY($1::text[])",
                    [first.hold_id, second.hold_id],
                )
                return await verify_sale(connection, client, setup.sale.id)
            finally:
                await transaction.rollback()

    report = _verify(settings, scenario)

    problems = report.failed("queue_numbers")
    assert len(problems) == 1
    assert problems[0].startswith("queue number 001 was issued 2 times")


def test_load_responses_rejects_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "responses.jsonl"
    path.write_text(
        '{"sale": 1, "hold": "1-1", "space": "A-001", "buyer": "R1", "status": 201}\n'
        '{"sale": 1, "hold": "1-2"}\n'
    )

    with pytest.raises(
        VerifyError, match=r"responses\.jsonl:2: expected a JSON object"
    ):
        load_responses([path])


def test_verify_command_exit_codes(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def prepare() -> int:
        async with _stores(settings) as (pool, client, setup):
            response = await _grant(pool, client, setup, 0, "A-001")
            return response.sale_id

    sale_id = run(prepare())
    responses = tmp_path / "responses"
    responses.mkdir()
    (responses / "good.jsonl").write_text(
        f'{{"sale": {sale_id}, "hold": "{sale_id}-1", "space": "A-001", '
        f'"buyer": "T{sale_id}-0000", "status": 201}}\n'
    )
    assert settings.redis_url and settings.database_url
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)

    passed = cli.main(["verify", str(sale_id), "--responses", str(responses)])
    passed_output = capsys.readouterr().out
    (responses / "bad.jsonl").write_text(
        f'{{"sale": {sale_id}, "hold": "{sale_id}-95", "space": "A-002", '
        f'"buyer": "T{sale_id}-0001", "status": 201}}\n'
    )
    failed = cli.main(["verify", str(sale_id), "--responses", str(responses)])
    failed_output = capsys.readouterr().out

    assert passed == 0
    assert "verification passed" in passed_output
    assert failed == 1
    assert "FAIL  every 201/202 response names a hold in Postgres" in failed_output
    assert "1 violation(s)" in failed_output
