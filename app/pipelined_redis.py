"""A lean Redis connection for the grab: one socket, replies in order.

Each call queues its command and waits for a future. The commands queued
during one event-loop tick are written with one system call at the end of
that tick, so concurrent requests share one connection and are pipelined
without waiting for a batch to fill. Replies are parsed by hiredis and handed
to the futures in the order the commands were sent. A caller that is cancelled while
waiting keeps its place in the queue: its reply is read and dropped, so it
can never be handed to another request.

Only the hot grab path uses this; everything else uses redis-py. Errors are
raised as redis-py's exceptions, so callers catch `redis.RedisError` alone.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, cast
from urllib.parse import unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        # When each waiting command was queued (time.monotonic()), in order.
        self.queued_at: collections.deque[float] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        # Commands of the current event-loop tick, written in one system call.
        self.outgoing: list[bytes] = []

    def queue(self, packed: bytes, future: asyncio.Future[Any]) -> None:
        """Queue a command; futures are resolved in the order queued."""
        if self.closed:
            future.set_exception(RedisConnectionError("connection to Redis lost"))
            return
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outgoing.append(packed)
        self.waiting.append(future)
        self.queued_at.append(time.monotonic())

    def _flush(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future = self.waiting.popleft()
            self.queued_at.popleft()
            if future.done():
                continue  # Its caller was cancelled; the reply is dropped.
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                error = (
                    NoScriptError if message.startswith("NOSCRIPT") else ResponseError
                )
                future.set_exception(error(message))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = RedisConnectionError(f"connection to Redis lost: {exc!r}")
        self.queued_at.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class PipelinedRedis:
    """One connection, opened on first use and reopened after it is lost."""

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            raise ValueError(f"only redis:// URLs are supported here, got {url!r}")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.password = unquote(parsed.password) if parsed.password else None
        self.username = unquote(parsed.username) if parsed.username else None
        self.db = int(parsed.path.lstrip("/") or 0)
        self.timeout_seconds = timeout_seconds
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()
        # One timer checks the oldest waiting commands, instead of one timer
        # per command; it runs only while commands are waiting.
        self._watchdog: asyncio.TimerHandle | None = None
        self._check_every = timeout_seconds / 4

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        async with self._connecting:
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            loop = asyncio.get_running_loop()
            try:
                _, fresh = await asyncio.wait_for(
                    loop.create_connection(_Protocol, self.host, self.port),
                    self.timeout_seconds,
                )
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(
                    f"cannot connect to Redis at {self.host}:{self.port}: {exc!r}"
                ) from None
            # Authenticate and select before anyone else may send on it.
            if self.password is not None:
                credentials = (
                    [self.username, self.password] if self.username else [self.password]
                )
                await self._handshake(fresh, ("AUTH", *credentials))
            if self.db:
                await self._handshake(fresh, ("SELECT", self.db))
            self._protocol = fresh
            logger.info("hot_redis_connected", extra={"port": self.port})
            return fresh

    async def _send(self, protocol: _Protocol, command: tuple[Any, ...]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        protocol.queue(hiredis.pack_command(command), future)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._check_every, self._expire)
        return await future

    async def _handshake(self, protocol: _Protocol, command: tuple[Any, ...]) -> Any:
        # The watchdog watches only the connection in use, not this new one.
        try:
            return await asyncio.wait_for(
                self._send(protocol, command), self.timeout_seconds
            )
        except TimeoutError:
            if protocol.transport is not None:
                protocol.transport.close()
            raise RedisTimeoutError(
                f"Redis did not respond to {command[0]} within {self.timeout_seconds} s"
            ) from None

    def _expire(self) -> None:
        """Fail the commands waiting longer than the timeout, oldest first.

        A failed command keeps its place, so its late reply is dropped. A
        command therefore fails between 1 and 1.25 timeouts after it was
        queued.
        """
        self._watchdog = None
        protocol = self._protocol
        if protocol is None or protocol.closed:
            return  # Losing the connection failed every waiting command.
        limit = time.monotonic() - self.timeout_seconds
        for future, queued_at in zip(
            protocol.waiting, protocol.queued_at, strict=False
        ):
            if queued_at > limit:
                break
            if not future.done():
                future.set_exception(
                    RedisTimeoutError(
                        f"Redis did not respond within {self.timeout_seconds} s"
                    )
                )
        if protocol.waiting:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(self._check_every, self._expire)

    async def execute(self, *command: Any) -> Any:
        """Send one command and return its reply; raises `redis.RedisError`."""
        return await self._send(await self._connected(), command)

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
