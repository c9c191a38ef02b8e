"""Helpers shared by the tests: build sales on the real servers."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis

from app import arming, database, imports, sales
from app.settings import Settings, load_settings

T = TypeVar("T")
_names = itertools.count(1)


def settings_for(redis_url: str, database_url: str, **overrides: str) -> Settings:
    """Return settings for tests: fast hashing, no rate limit, no caching."""
    environ = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "PARKING_SECRET_KEY": "test-only-secret",
        "PARKING_ACCESS_CODE_MEMORY_KIB": "64",
        "PARKING_RATE_PER_SECOND": "1000",
        "PARKING_RATE_BURST": "1000",
        "PARKING_AVAILABILITY_CACHE_MS": "0",
        # Tests that need the periodic expiry turn it on; elsewhere its sweep
        # would change state that a test is in the middle of checking.
        "PARKING_RUN_EXPIRER": "false",
        **overrides,
    }
    return load_settings(environ, env_file=None)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous test code."""
    return asyncio.run(coroutine)


@dataclasses.dataclass(frozen=True)
class Buyer:
    registration_no: str
    access_code: str
    limit: int


@dataclasses.dataclass(frozen=True)
class SaleSetup:
    sale: sales.Sale
    labels: list[str]
    buyers: list[Buyer]


def space_csv(labels: list[str], zone: str = "A", price_yuan: int = 10000) -> str:
    lines = ["label,zone,level,kind,price_yuan"]
    lines += [f"{label},{zone},B1,standard,{price_yuan}" for label in labels]
    return "\n".join(lines) + "\n"


def registrant_csv(buyers: list[Buyer]) -> str:
    lines = ["registration_no,name,phone,access_code,limit"]
    lines += [
        f"{b.registration_no},Buyer {b.registration_no},1380000{i:04d},"
        f"{b.access_code},{b.limit}"
        for i, b in enumerate(buyers)
    ]
    return "\n".join(lines) + "\n"


async def make_sale(
    settings: Settings,
    spaces: int = 10,
    buyers: int = 10,
    limits: dict[int, int] | None = None,
    opens_in: float = -60.0,
    duration: float = 3600.0,
    payment_hours: float = 48.0,
    arm: bool = True,
) -> SaleSetup:
    """Create a sale with `spaces` spaces and `buyers` registrants, armed.

    `opens_in` is seconds from now (negative: already open). `limits` maps a
    buyer's index to a limit other than 1.
    """
    assert settings.database_url and settings.redis_url
    pool = await database.create_pool(settings.database_url, max_size=2)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        number = next(_names)
        opens_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=opens_in)
        sale = await sales.create_sale(
            pool,
            name=f"Test sale {number}",
            zones=["A", "B"],
            opens_at=opens_at,
            closes_at=opens_at + dt.timedelta(seconds=duration),
            payment_hours=payment_hours,
        )
        labels = [f"A-{i:03d}" for i in range(1, spaces + 1)]
        people = [
            Buyer(f"T{sale.id}-{i:04d}", f"code{i:04d}", (limits or {}).get(i, 1))
            for i in range(buyers)
        ]
        async with pool.acquire() as connection:
            await imports.import_spaces(connection, sale, space_csv(labels))
            await imports.import_registrants(
                connection,
                sale,
                registrant_csv(people),
                settings.access_code_memory_kib,
            )
        if arm:
            sale = await arming.arm_sale(pool, client, sale.id)
        return SaleSetup(sale, labels, people)
    finally:
        await client.aclose()
        await pool.close()
