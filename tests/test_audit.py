"""The tamper-evident audit log: the chain, and finding edits, deletions and
insertions made directly in Postgres.

Tampering runs with `session_replication_role = replica`, which switches the
append-only and chaining triggers off for that one transaction, as someone
with superuser rights could.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest

from app import audit
from app.payments import PaymentRequest, confirm_payment
from app.settings import Settings
from app.types import DbConnection
from tests.office import add_member, grab_spaces, login, stores
from tests.support import make_sale, run


def audited_sale(settings: Settings) -> int:
    """Create a sale with three grants and one payment; return its id."""
    setup = run(make_sale(settings, spaces=4, buyers=4))
    cashier = run(add_member(settings, "cashier"))

    async def prepare() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 3)
            request = PaymentRequest(1_000_000, "cash", f"R-{holds[0]}")
            await confirm_payment(pool, holds[0], request, cashier)

    run(prepare())
    return setup.sale.id


def tamper(
    settings: Settings, sale_id: int, change: Callable[[DbConnection], Awaitable[None]]
) -> audit.ChainVerdict:
    """Apply `change` with the audit triggers off; return the new verdict."""

    async def apply() -> audit.ChainVerdict:
        async with stores(settings, max_size=1) as (pool, _):
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute("SET LOCAL session_replication_role = replica")
                await change(connection)
            return await audit.verify_chain(pool, sale_id)

    return run(apply())


async def entry_id(connection: DbConnection, sale_id: int, seq: int) -> int:
    value = await connection.fetchval(
        "SELECT id FROM audit_log WHERE sale_id = $1 AND seq = $2", sale_id, seq
    )
    assert value is not None
    return int(value)


def verify(settings: Settings, sale_id: int) -> audit.ChainVerdict:
    async def check() -> audit.ChainVerdict:
        async with stores(settings, max_size=1) as (pool, _):
            return await audit.verify_chain(pool, sale_id)

    return run(check())


def test_chain_intact_after_changes(settings: Settings) -> None:
    sale_id = audited_sale(settings)

    verdict = verify(settings, sale_id)

    assert verdict.intact
    assert verdict.entries == 4
    assert len(verdict.final_hash) == 64


def test_direct_update_is_rejected(settings: Settings) -> None:
    sale_id = audited_sale(settings)

    async def edit() -> None:
        async with stores(settings, max_size=1) as (pool, _):
            await pool.execute(
                "UPDATE audit_log SET actor = 'x' WHERE sale_id = $1", sale_id
            )

    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        run(edit())
    assert verify(settings, sale_id).intact


def test_edited_entry_named(settings: Settings) -> None:
    sale_id = audited_sale(settings)
    edited: list[int] = []

    async def edit(connection: DbConnection) -> None:
        edited.append(await entry_id(connection, sale_id, 2))
        await connection.execute(
            "UPDATE audit_log SET actor = 'someone else' WHERE id = $1", edited[0]
        )

    verdict = tamper(settings, sale_id, edit)

    assert not verdict.intact
    assert verdict.entry_id == edited[0]
    assert verdict.problem is not None
    assert f"entry {edited[0]} (seq 2" in verdict.problem
    assert "was changed" in verdict.problem


def test_deleted_entry_named(settings: Settings) -> None:
    sale_id = audited_sale(settings)
    following: list[int] = []

    async def delete(connection: DbConnection) -> None:
        following.append(await entry_id(connection, sale_id, 3))
        await connection.execute(
            "DELETE FROM audit_log WHERE sale_id = $1 AND seq = 2", sale_id
        )

    verdict = tamper(settings, sale_id, delete)

    assert not verdict.intact
    assert verdict.problem is not None
    assert "seq 2 was removed" in verdict.problem
    assert f"before entry {following[0]}" in verdict.problem


def test_deleted_last_entry_named(settings: Settings) -> None:
    sale_id = audited_sale(settings)

    async def delete(connection: DbConnection) -> None:
        await connection.execute(
            "DELETE FROM audit_log WHERE sale_id = $1 AND seq = 4", sale_id
        )

    verdict = tamper(settings, sale_id, delete)

    assert not verdict.intact
    assert verdict.problem is not None
    assert "the last entries were removed" in verdict.problem
    assert "seq 4 was written" in verdict.problem


def test_inserted_entry_named(settings: Settings) -> None:
    sale_id = audited_sale(settings)
    forged: list[int] = []

    async def insert(connection: DbConnection) -> None:
        # A well-formed forgery: chained to entry 1 and hashed correctly.
        value = await connection.fetchval(
            """
            INSERT INTO audit_log (sale_id, at, actor, action, subject, after,
                                   seq, prev_hash, hash)
            SELECT $1, first.at, 'staff:mallory', 'payment_confirmed', 'x',
                   '{"queue_no": 1}'::jsonb, 2, first.hash,
                   audit_entry_hash(first.hash, 2, $1, first.at, 'staff:mallory',
                                    'payment_confirmed', 'x', NULL,
                                    '{"queue_no": 1}'::jsonb)
            FROM audit_log first WHERE first.sale_id = $1 AND first.seq = 1
            RETURNING id
            """,
            sale_id,
        )
        forged.append(int(value))

    verdict = tamper(settings, sale_id, insert)

    assert not verdict.intact
    assert verdict.entry_id == forged[0]
    assert verdict.problem is not None
    assert "was inserted" in verdict.problem


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    assert settings.redis_url and settings.database_url
    environ = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verify_audit_command(settings: Settings) -> None:
    sale_id = audited_sale(settings)
    intact = cli(settings, "verify-audit", str(sale_id))
    final_hash = verify(settings, sale_id).final_hash
    wrong_hash = cli(settings, "verify-audit", str(sale_id), "--final-hash", "0" * 64)

    async def edit(connection: DbConnection) -> None:
        await connection.execute(
            "UPDATE audit_log SET subject = 'x' WHERE sale_id = $1 AND seq = 3",
            sale_id,
        )

    tamper(settings, sale_id, edit)
    broken = cli(settings, "verify-audit", str(sale_id))

    assert intact.returncode == 0, intact.stderr
    assert final_hash in intact.stdout
    assert wrong_hash.returncode == 1
    assert "not the published" in wrong_hash.stdout
    assert broken.returncode == 1
    assert "(seq 3, hold_granted) was changed" in broken.stdout


def test_exports_end_with_final_hash(http: httpx.Client, settings: Settings) -> None:
    sale_id = audited_sale(settings)
    headers = login(http, run(add_member(settings, "cashier")))
    final_hash = verify(settings, sale_id).final_hash

    results = http.get(f"/api/staff/sales/{sale_id}/export.csv", headers=headers)
    log = http.get(f"/api/staff/sales/{sale_id}/audit.csv", headers=headers)

    assert results.status_code == 200
    assert results.headers["content-type"].startswith("text/csv")
    assert results.text.splitlines()[-1] == f"# audit_final_hash,{final_hash}"
    assert log.text.splitlines()[-1] == f"# audit_final_hash,{final_hash}"
    # Header, four entries, a blank line, the count and the hash.
    assert len(log.text.splitlines()) == 1 + 4 + 3
