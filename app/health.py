"""Health endpoints for load balancers and for the benchmark.

`/livez` answers without touching any store: it is also the "bare endpoint"
the benchmark compares the grab against. `/readyz` checks both stores.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.services import services

logger = logging.getLogger(__name__)

_ALIVE = b'{"status":"ok"}'


async def live(request: Request) -> Response:
    return Response(_ALIVE, media_type="application/json")


async def ready(request: Request) -> Response:
    svc = services(request)
    problems: dict[str, str] = {}
    try:
        await asyncio.wait_for(svc.redis.ping(), 1.0)
    except (RedisError, OSError, TimeoutError) as exc:
        problems["redis"] = type(exc).__name__
    try:
        await asyncio.wait_for(svc.pool.fetchval("SELECT 1"), 1.0)
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        problems["postgres"] = type(exc).__name__
    if problems:
        logger.warning("not_ready", extra=problems)
        body = (
            b'{"status":"unavailable","failing":["'
            + b'","'.join(name.encode() for name in sorted(problems))
            + b'"]}'
        )
        return Response(body, 503, media_type="application/json")
    return Response(_ALIVE, media_type="application/json")


routes = [
    Route("/livez", live, methods=["GET"]),
    Route("/readyz", ready, methods=["GET"]),
]
