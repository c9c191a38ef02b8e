"""Fixtures: real redis-server and Postgres on loopback, and a live service.

With REDIS_URL and DATABASE_URL set the tests use those servers; otherwise
they start embedded ones once per run, in a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from app import database
from app.embedded import EmbeddedServers, free_port
from app.settings import Settings
from app.web import create_app
from tests.support import settings_for


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    redis_url = os.environ.get("REDIS_URL")
    database_url = os.environ.get("DATABASE_URL")
    if redis_url and database_url:
        yield redis_url, database_url
        return
    embedded = EmbeddedServers(fast=True)
    embedded.start()
    try:
        yield embedded.redis.url, embedded.postgres.url
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def settings(servers: tuple[str, str]) -> Settings:
    redis_url, database_url = servers
    configured = settings_for(redis_url, database_url)

    async def migrate() -> None:
        assert configured.database_url
        pool = await database.create_pool(configured.database_url)
        async with pool.acquire() as connection:
            await database.migrate(connection)
        await pool.close()

    asyncio.run(migrate())
    return configured


class LiveServer:
    """uvicorn serving the app in a thread, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            loop="uvloop",
            http="httptools",
            log_config=None,
            access_log=False,
            limit_concurrency=2000,
            backlog=4096,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2):
            pass

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
