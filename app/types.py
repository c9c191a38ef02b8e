"""Type aliases shared across the application."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

DbPool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# A connection of its own or one borrowed from a pool.
DbConnection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
)
# Anything with fetch/fetchrow/execute: a connection or the pool itself.
DbExecutor: TypeAlias = "DbConnection | DbPool"
