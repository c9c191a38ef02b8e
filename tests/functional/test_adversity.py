"""Faults: a killed persister, a restarted Redis, a stopped Postgres.

Each test runs on servers of its own, so stopping them disturbs no other test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from app import database, scripts
from app.embedded import EmbeddedServers
from app.keys import SaleKeys
from app.persister import Persister
from app.reconcile import reconcile
from app.redis_store import RedisStore
from app.settings import Settings
from tests.conftest import LiveServer
from tests.support import SaleSetup, make_sale, run, settings_for


@pytest.fixture
def own_servers() -> Iterator[EmbeddedServers]:
    servers = EmbeddedServers(fast=True)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


def migrated_settings(servers: EmbeddedServers, **overrides: str) -> Settings:
    settings = settings_for(servers.redis.url, servers.postgres.url, **overrides)

    async def migrate() -> None:
        pool = await database.create_pool(servers.postgres.url)
        async with pool.acquire() as connection:
            await database.migrate(connection)
        await pool.close()

    run(migrate())
    return settings


async def recorded_ids(settings: Settings, sale_id: int) -> list[str]:
    assert settings.database_url
    pool = await database.create_pool(settings.database_url)
    try:
        rows = await pool.fetch("SELECT id FROM holds WHERE sale_id = $1", sale_id)
        return [row["id"] for row in rows]
    finally:
        await pool.close()


async def streamed_ids(settings: Settings, sale_id: int) -> list[str]:
    assert settings.redis_url
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        entries = await client.xrange(SaleKeys.for_sale(sale_id).grants)
        return [fields[b"hold"].decode() for _, fields in entries]
    finally:
        await client.aclose()


async def wait_until_agreed(settings: Settings, sale_id: int, seconds: float) -> Any:
    assert settings.database_url and settings.redis_url
    pool = await database.create_pool(settings.database_url)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        deadline = time.monotonic() + seconds
        while True:
            report = await reconcile(pool, client, sale_id)
            if report.agrees or time.monotonic() > deadline:
                return report
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()
        await pool.close()


async def grant_directly(settings: Settings, setup: SaleSetup, count: int) -> None:
    """Grant spaces through the grab script alone, as if every request died."""
    assert settings.redis_url
    client = aioredis.Redis.from_url(settings.redis_url)
    store = RedisStore(client, 600)
    try:
        for index in range(count):
            buyer = setup.buyers[index]
            reply = await store.grab(
                setup.sale.id, buyer.registration_no, f"k{index}", [setup.labels[index]]
            )
            assert reply.outcome == "granted"
    finally:
        await client.aclose()


def persister_process(
    settings: Settings, batch_size: int = 500
) -> subprocess.Popen[bytes]:
    assert settings.redis_url and settings.database_url
    environ = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "persist",
            f"--batch-size={batch_size}",
            "--claim-idle-ms=1000",
        ],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_persister_killed_mid_drain(own_servers: EmbeddedServers) -> None:
    settings = migrated_settings(own_servers)
    setup = run(make_sale(settings, spaces=3000, buyers=3000))
    run(grant_directly(settings, setup, 3000))

    # Small batches make the drain take long enough to be interrupted.
    first = persister_process(settings, batch_size=20)
    deadline = time.monotonic() + 30
    while not run(recorded_ids(settings, setup.sale.id)):
        assert time.monotonic() < deadline, "the persister recorded nothing"
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait()
    partial = len(run(recorded_ids(settings, setup.sale.id)))

    second = persister_process(settings)
    try:
        report = run(wait_until_agreed(settings, setup.sale.id, 60))
    finally:
        second.terminate()
        second.wait(timeout=20)

    recorded = run(recorded_ids(settings, setup.sale.id))
    streamed = run(streamed_ids(settings, setup.sale.id))
    assert partial > 0
    assert report.differences == []
    assert sorted(recorded) == sorted(streamed)
    assert len(recorded) == len(set(recorded)) == 3000


def test_persister_claims_dead_consumers_entries(
    own_servers: EmbeddedServers,
) -> None:
    settings = migrated_settings(own_servers)
    setup = run(make_sale(settings, spaces=20, buyers=20))
    run(grant_directly(settings, setup, 20))

    async def read_and_die_then_recover() -> tuple[int, int]:
        assert settings.redis_url and settings.database_url
        client = aioredis.Redis.from_url(settings.redis_url)
        pool = await database.create_pool(settings.database_url)
        keys = SaleKeys.for_sale(setup.sale.id)
        try:
            # A consumer reads everything and dies before acknowledging.
            await client.xreadgroup("persister", "dead", {keys.grants: ">"}, count=100)
            pending_before = (await client.xpending(keys.grants, "persister"))[
                "pending"
            ]
            survivor = Persister(client, pool, consumer="alive", claim_idle_ms=0)
            await survivor.drain_sale(setup.sale.id)
            pending_after = (await client.xpending(keys.grants, "persister"))["pending"]
            return pending_before, pending_after
        finally:
            await client.aclose()
            await pool.close()

    before, after = run(read_and_die_then_recover())

    assert before == 20
    assert after == 0
    assert len(run(recorded_ids(settings, setup.sale.id))) == 20


def grab_all(
    server: LiveServer, setup: SaleSetup, labels: list[str], offset: int
) -> list[httpx.Response]:
    answers = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for index, label in enumerate(labels):
            buyer = setup.buyers[offset + index]
            token = http.post(
                f"/api/sales/{setup.sale.id}/session",
                json={
                    "registration_no": buyer.registration_no,
                    "access_code": buyer.access_code,
                },
            ).json()["token"]
            answers.append(
                http.post(
                    f"/api/sales/{setup.sale.id}/holds",
                    json={"space": label},
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                )
            )
    return answers


@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
def test_redis_restart_keeps_grants(own_servers: EmbeddedServers, kill: bool) -> None:
    settings = migrated_settings(own_servers)
    setup = run(make_sale(settings, spaces=40, buyers=40))
    server = LiveServer(settings)
    server.start()
    try:
        before = grab_all(server, setup, setup.labels[:20], 0)
        own_servers.redis.stop(kill=kill)
        own_servers.redis.start()
        after = grab_all(server, setup, setup.labels[20:], 20)
        # Spaces granted before the restart must still be taken.
        again = grab_all(server, setup, setup.labels[:1], 39)
    finally:
        server.stop()

    assert [r.status_code for r in before] == [201] * 20
    assert [r.status_code for r in after] == [201] * 20
    assert again[0].status_code == 409
    report = run(wait_until_agreed(settings, setup.sale.id, 30))
    assert report.differences == []
    assert len(run(recorded_ids(settings, setup.sale.id))) == 40


def test_postgres_outage_defers_recording(own_servers: EmbeddedServers) -> None:
    settings = migrated_settings(own_servers, PARKING_POSTGRES_TIMEOUT_SECONDS="0.5")
    setup = run(make_sale(settings, spaces=30, buyers=30))
    server = LiveServer(settings)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            tokens = []
            for buyer in setup.buyers:
                response = http.post(
                    f"/api/sales/{setup.sale.id}/session",
                    json={
                        "registration_no": buyer.registration_no,
                        "access_code": buyer.access_code,
                    },
                )
                tokens.append(response.json()["token"])
            # Warm the sale cache so responses can name the price during the outage.
            http.get(f"/api/sales/{setup.sale.id}")
            own_servers.postgres.stop()
            during = [
                http.post(
                    f"/api/sales/{setup.sale.id}/holds",
                    json={"space": label},
                    headers={
                        "Authorization": f"Bearer {tokens[index]}",
                        "Idempotency-Key": f"outage-{index}",
                    },
                )
                for index, label in enumerate(setup.labels[:20])
            ]
            taken = http.post(
                f"/api/sales/{setup.sale.id}/holds",
                json={"space": setup.labels[0]},
                headers={
                    "Authorization": f"Bearer {tokens[25]}",
                    "Idempotency-Key": "loser",
                },
            )
            own_servers.postgres.start()
            report = run(wait_until_agreed(settings, setup.sale.id, 60))
            # After recovery the same key gets 201, because the hold is now recorded.
            repeat = http.post(
                f"/api/sales/{setup.sale.id}/holds",
                json={"space": setup.labels[0]},
                headers={
                    "Authorization": f"Bearer {tokens[0]}",
                    "Idempotency-Key": "outage-0",
                },
            )
    finally:
        server.stop()

    assert [r.status_code for r in during] == [202] * 20
    assert all(r.json()["status"] == "pending" for r in during)
    assert during[0].json()["amount_yuan"] == 10000
    assert taken.status_code == 409
    assert report.differences == []
    assert sorted(run(recorded_ids(settings, setup.sale.id))) == sorted(
        r.json()["hold"] for r in during
    )
    assert repeat.status_code == 201
    assert repeat.json()["hold"] == during[0].json()["hold"]


def test_grab_fails_closed_without_redis(own_servers: EmbeddedServers) -> None:
    settings = migrated_settings(own_servers)
    setup = run(make_sale(settings, spaces=2, buyers=2))
    server = LiveServer(settings)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            buyer = setup.buyers[0]
            token = http.post(
                f"/api/sales/{setup.sale.id}/session",
                json={
                    "registration_no": buyer.registration_no,
                    "access_code": buyer.access_code,
                },
            ).json()["token"]
            own_servers.redis.stop()
            response = http.post(
                f"/api/sales/{setup.sale.id}/holds",
                json={"space": "A-001"},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "r1"},
            )
            own_servers.redis.start()
            retry = http.post(
                f"/api/sales/{setup.sale.id}/holds",
                json={"space": "A-001"},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "r1"},
            )
    finally:
        server.stop()

    assert response.status_code == 503
    assert "Idempotency-Key" in response.json()["message"]
    assert retry.status_code == 201
    assert len(run(recorded_ids(settings, setup.sale.id))) == 1


def test_scripts_module_loads_after_restart(own_servers: EmbeddedServers) -> None:
    async def check() -> bool:
        client = aioredis.Redis.from_url(own_servers.redis.url)
        await scripts.load_all(client)
        await client.aclose()
        own_servers.redis.stop()
        own_servers.redis.start()
        client = aioredis.Redis.from_url(own_servers.redis.url)
        try:
            return bool((await client.script_exists(scripts.GRAB.sha))[0])
        finally:
            await client.aclose()

    assert run(check()) is False
