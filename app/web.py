"""The Starlette application: wiring, lifespan, and the error mapping.

`create_app()` is the uvicorn factory. On start-up it connects to Redis and
Postgres, loads the Lua scripts and starts the persister and the expiry in
the background, unless the settings turn them off. Shutdown stops them in
reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import (
    api_buyer,
    api_manage,
    api_staff,
    api_waiting_list,
    expiry,
    health,
    metrics,
    pages_buyer,
    pages_manage,
    pages_staff,
    scripts,
)
from app.api_buyer import json_response
from app.catalog import Catalog
from app.database import create_pool
from app.errors import STORE_UNAVAILABLE, AppError
from app.grab_endpoint import GrabEndpoint
from app.grabbing import GrabService
from app.hold_refs import HoldRefs
from app.logs import configure_logging, new_request_id, request_id
from app.persister import Persister
from app.pipelined_redis import PipelinedRedis
from app.ratelimit import TokenBuckets
from app.redis_store import RedisStore
from app.services import Services
from app.sessions import BuyerSessions
from app.settings import Settings, load_settings
from app.templating import static_files

logger = logging.getLogger(__name__)

# Minimum age of a grant before the in-service persister records it, because
# the winning request has usually recorded it by then.
PERSIST_GRACE_MS = 500

# How long shutdown waits for Postgres queries in flight.
SHUTDOWN_WAIT_SECONDS = 10.0


class ParkingApp(Starlette):
    """Starlette, with grabs handled ahead of the middleware stack.

    At launch nearly every request is a grab. `GrabEndpoint` handles it with
    the same checks as the routed handler, without the router, request and
    response objects and exception middleware around it.
    """

    fast_grabs = GrabEndpoint()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            scope["app"] = self
            if await self.fast_grabs.handle(scope, receive, send):
                return
        await super().__call__(scope, receive, send)


class RequestIdMiddleware:
    """Give each request an id, in the logs and in the X-Request-ID header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        current = new_request_id()
        request_id.set(current)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", current.encode()),
                ]
            await send(message)

        # Not reset afterwards: the error handler outside this middleware
        # reports the id, and each request runs in a task of its own anyway.
        await self.app(scope, receive, send_with_id)


async def on_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    headers = None
    if exc.status == 429 and "retry_after" in exc.details:
        headers = {"Retry-After": str(max(1, round(exc.details["retry_after"])))}
    if exc.details.get("replayed"):
        headers = {"Idempotent-Replayed": "true"}
    return json_response(exc.body(), exc.status, headers)


async def on_data_error(request: Request, exc: Exception) -> Response:
    # Postgres refused a value that passed validation, such as an id too large
    # for its column: the request is at fault, not the service.
    logger.warning(
        "value_rejected", extra={"path": request.url.path, "error": repr(exc)}
    )
    return json_response(
        {
            "error": "bad_request",
            "message": "A value in the request is out of range or malformed.",
        },
        400,
    )


async def on_store_unavailable(request: Request, exc: Exception) -> Response:
    logger.error(
        "store_unavailable", extra={"path": request.url.path, "error": repr(exc)}
    )
    return json_response(
        {
            "error": "unavailable",
            "message": "The service cannot reach Redis or Postgres right now; "
            "try again in a few seconds.",
        },
        503,
        {"Retry-After": "5"},
    )


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return json_response(
        {"error": codes.get(exc.status_code, "http_error"), "message": exc.detail},
        exc.status_code,
        dict(exc.headers) if exc.headers else None,
    )


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error("request_failed", exc_info=exc, extra={"path": request.url.path})
    return json_response(
        {
            "error": "internal_error",
            "message": "Something went wrong on our side; the request id is "
            f"{request_id.get()}.",
        },
        500,
    )


async def start_services(settings: Settings) -> Services:
    """Connect to both stores; raise `RuntimeError` when a URL is missing."""
    if not settings.redis_url or not settings.database_url:
        raise RuntimeError("REDIS_URL and DATABASE_URL must both be set to serve")
    secret = settings.secret_key
    if secret is None:
        secret = secrets.token_urlsafe(32)
        logger.warning("secret_key_generated", extra={"hint": "set PARKING_SECRET_KEY"})
    client = aioredis.Redis.from_url(
        settings.redis_url, max_connections=512, health_check_interval=30
    )
    await scripts.load_all(client)
    pool = await create_pool(settings.database_url, min_size=2, max_size=20)
    hot = PipelinedRedis(settings.redis_url) if settings.grab_lean_client else None
    store = RedisStore(client, settings.idempotency_ttl_seconds, hot)
    catalog = Catalog(pool)
    grabs = GrabService(
        store,
        pool,
        catalog,
        TokenBuckets(settings.rate_per_second, settings.rate_burst),
        settings.postgres_timeout_seconds,
    )
    return Services(
        settings=settings,
        redis=client,
        pool=pool,
        store=store,
        catalog=catalog,
        grabs=grabs,
        buyer_sessions=BuyerSessions(secret, settings.session_ttl_seconds),
        hold_refs=HoldRefs(secret),
    )


def create_app(settings: Settings | None = None) -> ParkingApp:
    """Build the application; settings default to the environment's."""
    settings = settings or load_settings()
    # Worker processes that uvicorn spawns start here, not in the command line.
    configure_logging(settings.log_level, settings.log_format)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc = await start_services(settings)
        app.state.services = svc
        tasks = [asyncio.create_task(metrics.run_flusher())]
        if settings.run_persister:
            persister = Persister(svc.redis, svc.pool, grace_ms=PERSIST_GRACE_MS)
            tasks.append(asyncio.create_task(persister.run()))
        if settings.run_expirer:
            tasks.append(
                asyncio.create_task(
                    expiry.run_periodically(
                        svc.pool, svc.store, settings.expire_interval_seconds
                    )
                )
            )
        logger.info("service_started")
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            # A driver that turns a cancellation into its own error could
            # keep a loop alive; shutdown must still finish.
            _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_SECONDS)
            if stuck:
                logger.warning(
                    "background_tasks_abandoned", extra={"count": len(stuck)}
                )
            logger.info("service_stopping", extra={"grab_outcomes": svc.grabs.outcomes})
            try:
                # close() waits for every query in flight; do not wait forever.
                await asyncio.wait_for(svc.pool.close(), SHUTDOWN_WAIT_SECONDS)
            except TimeoutError:
                logger.warning("postgres_pool_terminated")
                svc.pool.terminate()
            if svc.store.hot is not None:
                svc.store.hot.close()
            await svc.redis.aclose()

    app = ParkingApp(
        routes=[
            *health.routes,
            *api_buyer.routes,
            *api_staff.routes,
            *api_waiting_list.routes,
            *api_manage.routes,
            *pages_buyer.routes,
            *pages_staff.routes,
            *pages_manage.routes,
            static_files,
        ],
        lifespan=lifespan,
        exception_handlers={
            AppError: on_app_error,
            asyncpg.DataError: on_data_error,
            **{error: on_store_unavailable for error in STORE_UNAVAILABLE},
            HTTPException: on_http_error,
            Exception: on_unexpected_error,
        },
    )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(metrics.MetricsMiddleware)
    metrics.switch.enabled = settings.metrics
    return app
