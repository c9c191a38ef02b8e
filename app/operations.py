"""The `parking-sale` commands, run against the servers named in the settings."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
import uvicorn

from app import arming, database, imports, sales
from app.persister import Persister
from app.reconcile import reconcile as compare_stores
from app.settings import Settings
from app.types import DbPool


class CommandError(RuntimeError):
    """A command cannot run as asked; the message names what to change."""


def _urls(settings: Settings) -> tuple[str, str]:
    if not settings.redis_url or not settings.database_url:
        raise CommandError(
            "REDIS_URL and DATABASE_URL must be set (for example "
            "redis://127.0.0.1:6379/0 and postgresql://user@127.0.0.1/parking); "
            "`parking-sale demo` starts its own servers instead."
        )
    return settings.redis_url, settings.database_url


@contextlib.asynccontextmanager
async def connect(
    settings: Settings,
) -> AsyncIterator[tuple[DbPool, aioredis.Redis]]:
    redis_url, database_url = _urls(settings)
    pool = await database.create_pool(database_url, min_size=1, max_size=4)
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield pool, client
    finally:
        await client.aclose()
        await pool.close()


def serve(args: argparse.Namespace, settings: Settings) -> int:
    _urls(settings)
    if settings.secret_key is None:
        # Every worker process must sign with the same key.
        os.environ["PARKING_SECRET_KEY"] = secrets.token_urlsafe(32)
    workers = args.workers or settings.workers
    metrics_dir = None
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Workers write their metrics to files here; a scrape sums them.
        metrics_dir = tempfile.mkdtemp(prefix="parking-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "app.web:create_app",
            factory=True,
            host=args.host or settings.host,
            port=args.port if args.port is not None else settings.port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_config=None,
            access_log=False,
            server_header=False,
            # Longer than any page's polling interval, so a grab is never
            # sent on a connection the server has just closed as idle.
            timeout_keep_alive=75,
            # Stop waiting for open connections after this, so a stop or a
            # restart of the service is bounded.
            timeout_graceful_shutdown=15,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


async def migrate(args: argparse.Namespace, settings: Settings) -> int:
    _, database_url = _urls(settings)
    connection = await asyncpg.connect(database_url)
    try:
        applied = await database.migrate(connection)
    finally:
        await connection.close()
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")
    return 0


async def create_sale(args: argparse.Namespace, settings: Settings) -> int:
    opens_at = args.opens_at or dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=args.opens_in
    )
    async with connect(settings) as (pool, _):
        sale = await sales.create_sale(
            pool,
            name=args.name,
            zones=[zone.strip() for zone in args.zones.split(",")],
            opens_at=opens_at,
            closes_at=opens_at + dt.timedelta(minutes=args.duration_minutes),
            buyer_limit=args.limit,
            payment_hours=args.payment_hours,
        )
    print(sale.id)
    return 0


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as file:
            return file.read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text") from None


async def import_spaces(args: argparse.Namespace, settings: Settings) -> int:
    text = _read_text(str(args.file))
    async with connect(settings) as (pool, _):
        sale = await sales.get_sale(pool, args.sale)
        async with pool.acquire() as connection:
            count = await imports.import_spaces(connection, sale, text)
    print(f"imported {count} space(s) into sale {args.sale}")
    return 0


async def import_registrants(args: argparse.Namespace, settings: Settings) -> int:
    text = _read_text(str(args.file))
    async with connect(settings) as (pool, _):
        sale = await sales.get_sale(pool, args.sale)
        async with pool.acquire() as connection:
            count = await imports.import_registrants(
                connection, sale, text, settings.access_code_memory_kib
            )
    print(f"imported {count} registrant(s) into sale {args.sale}")
    return 0


async def arm(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as (pool, client):
        persister = Persister(client, pool, claim_idle_ms=0)
        sale = await arming.arm_sale(
            pool, client, args.sale, force=args.force, drain=persister.drain_sale
        )
    print(
        f"sale {sale.id} armed (generation {sale.generation}); opens "
        f"{sale.opens_at.isoformat()}"
    )
    return 0


async def persist(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as (pool, client):
        await Persister(
            client,
            pool,
            batch_size=args.batch_size,
            claim_idle_ms=args.claim_idle_ms,
            grace_ms=500,
        ).run()
    return 0


async def reconcile(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as (pool, client):
        await sales.get_sale(pool, args.sale)
        report = await compare_stores(pool, client, args.sale)
    print(
        f"sale {report.sale_id}: {report.live_in_postgres} live hold(s) in Postgres, "
        f"{report.held_in_redis} held in Redis, {report.unrecorded_grants} grant(s) "
        "waiting in the stream"
    )
    for difference in report.differences:
        print(f"  DIFFERENT {difference}")
    print("agree" if report.agrees else f"{len(report.differences)} difference(s)")
    return 0 if report.agrees else 1
