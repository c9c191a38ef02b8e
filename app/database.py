"""Postgres connections and schema migrations.

Migrations are the files `sql/NNN_name.sql`, applied in order, each in its
own transaction, and recorded in `schema_migrations`, so `migrate` can run
any number of times and from several processes at once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg

from app.types import DbConnection, DbPool

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

# Exceptions a query raises when Postgres is down, slow or rejects it.
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

# Any fixed number; every migrating process takes this advisory lock first.
_MIGRATION_LOCK = 7_031_954


async def create_pool(url: str, min_size: int = 1, max_size: int = 10) -> DbPool:
    """Open a connection pool; raises OSError or asyncpg errors when unreachable."""
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, command_timeout=30
    )
    assert pool is not None
    return pool


def migration_files() -> list[Path]:
    return sorted(SQL_DIR.glob("[0-9][0-9][0-9]_*.sql"))


async def migrate(connection: DbConnection) -> list[str]:
    """Apply the migrations not yet applied; return their names."""
    applied_now: list[str] = []
    await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                name text PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        done = {
            row["name"]
            for row in await connection.fetch("SELECT name FROM schema_migrations")
        }
        for path in migration_files():
            if path.name in done:
                continue
            async with connection.transaction():
                await connection.execute(path.read_text())
                await connection.execute(
                    "INSERT INTO schema_migrations (name) VALUES ($1)", path.name
                )
            applied_now.append(path.name)
            logger.info("migration_applied", extra={"migration": path.name})
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now
