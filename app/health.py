"""Health and metrics endpoints for load balancers, monitoring and benchmarks.

`/livez` answers without touching any store: it is also the "bare endpoint"
the benchmark compares the grab against. `/readyz` checks both stores.
`/metrics` is the Prometheus scrape; keep it off the public network.
"""

from __future__ import annotations

import asyncio
import logging
import os

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import metrics
from app.keys import ARMED_SALES, SaleKeys
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


async def _refresh_gauges(request: Request) -> None:
    svc = services(request)
    try:
        for member in await svc.redis.smembers(ARMED_SALES):
            sale_id = int(member)
            keys = SaleKeys.for_sale(sale_id)
            lag = 0
            for group in await svc.redis.xinfo_groups(keys.grants):
                lag = int(group.get("pending") or 0) + int(group.get("lag") or 0)
            metrics.PERSISTER_LAG.labels(str(sale_id)).set(lag)
    except RedisError as exc:
        metrics.count_store_error("redis", "metrics")
        logger.warning("metrics_redis_failed", extra={"error": repr(exc)})
    try:
        rows = await svc.pool.fetch(
            "SELECT sale_id, status, count(*) AS n FROM holds GROUP BY sale_id, status"
        )
        for row in rows:
            metrics.HOLDS.labels(str(row["sale_id"]), row["status"]).set(row["n"])
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        metrics.count_store_error("postgres", "metrics")
        logger.warning("metrics_postgres_failed", extra={"error": repr(exc)})


async def scrape(request: Request) -> Response:
    await _refresh_gauges(request)
    metrics.flush()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        payload = generate_latest(registry)
    else:
        payload = generate_latest()
    return Response(payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


routes = [
    Route("/livez", live, methods=["GET"]),
    Route("/readyz", ready, methods=["GET"]),
    Route("/metrics", scrape, methods=["GET"]),
]
