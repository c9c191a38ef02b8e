"""Expiry from two `parking-sale expire` processes at once, on real servers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from app.reconcile import reconcile
from app.settings import Settings
from tests.office import grab_spaces, make_overdue, stores
from tests.support import make_sale, run

HOLDS = 30


def start_expire(settings: Settings) -> subprocess.Popen[str]:
    assert settings.redis_url and settings.database_url
    environ = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "expire"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_expire_each_hold_once(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=HOLDS + 2, buyers=HOLDS + 2))
    sale_id = setup.sale.id

    async def prepare() -> list[str]:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, HOLDS)
            await make_overdue(pool, holds)
            return holds

    holds = run(prepare())

    processes = [start_expire(settings), start_expire(settings)]
    outputs = [process.communicate(timeout=120) for process in processes]

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert out.startswith("expired ")

    async def check() -> None:
        async with stores(settings) as (pool, store):
            statuses = await pool.fetch(
                "SELECT status, count(*) FROM holds WHERE sale_id = $1 GROUP BY 1",
                sale_id,
            )
            assert {row["status"]: row["count"] for row in statuses} == {
                "expired": HOLDS
            }
            per_hold = await pool.fetch(
                """
                SELECT subject, count(*) FROM audit_log
                WHERE sale_id = $1 AND action = 'hold_expired' GROUP BY subject
                """,
                sale_id,
            )
            assert sorted(row["subject"] for row in per_hold) == sorted(holds)
            assert all(row["count"] == 1 for row in per_hold)

            report = await reconcile(pool, store.client, sale_id)
            assert report.differences == []
            assert report.held_in_redis == 0

            # The buyer's limit is back: the first buyer grabs again.
            again = await store.grab(
                sale_id, setup.buyers[0].registration_no, uuid.uuid4().hex, ["A-002"]
            )
            assert again.outcome == "granted"
            # The space is free again: a buyer who had none takes A-001.
            stranger = await store.grab(
                sale_id,
                setup.buyers[HOLDS].registration_no,
                uuid.uuid4().hex,
                ["A-001"],
            )
            assert stranger.outcome == "granted"

    run(check())
