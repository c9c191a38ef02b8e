"""Lua scripts from `lua/`, loaded once and called by SHA.

Redis forgets loaded scripts when it restarts or fails over; a NOSCRIPT
reply is answered by loading the body again and retrying once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from app.pipelined_redis import PipelinedRedis

LUA_DIR = Path(__file__).resolve().parent.parent / "lua"


class Script:
    """One Lua script, called with EVALSHA."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.body = (LUA_DIR / f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.body.encode()).hexdigest()

    async def load(self, client: aioredis.Redis) -> None:
        await client.script_load(self.body)

    async def __call__(
        self, client: aioredis.Redis, keys: list[str], args: list[str | int]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.load(client)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    async def call_pipelined(
        self, client: PipelinedRedis, keys: list[str], args: list[str | int]
    ) -> Any:
        """Run the script over the lean grab connection, loading it if needed."""
        try:
            return await client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # EVAL runs the body and caches it, so later EVALSHAs work again.
            return await client.execute("EVAL", self.body, len(keys), *keys, *args)


GRAB = Script("grab")
RELEASE = Script("release")
SNAPSHOT = Script("snapshot")
SET_STATE = Script("set_state")
ALL = (GRAB, RELEASE, SNAPSHOT, SET_STATE)


async def load_all(client: aioredis.Redis) -> None:
    """Load every script, so the first grab does not pay for it."""
    for script in ALL:
        await script.load(client)
