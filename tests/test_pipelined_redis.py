"""The lean pipelined Redis connection used by grabs."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.pipelined_redis import PipelinedRedis
from app.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def url(settings: Settings) -> str:
    assert settings.redis_url
    return settings.redis_url


async def test_concurrent_replies_in_order(url: str) -> None:
    client = PipelinedRedis(url)
    await asyncio.gather(*(client.execute("SET", f"pr:{i}", i) for i in range(500)))

    values = await asyncio.gather(
        *(client.execute("GET", f"pr:{i}") for i in range(500))
    )

    assert values == [str(i).encode() for i in range(500)]
    client.close()


async def test_cancelled_call_never_shifts_replies(url: str) -> None:
    client = PipelinedRedis(url)
    await asyncio.gather(*(client.execute("SET", f"pc:{i}", i) for i in range(300)))
    rng = random.Random(5)
    tasks = [asyncio.create_task(client.execute("GET", f"pc:{i}")) for i in range(300)]
    await asyncio.sleep(0)
    cancelled = set(rng.sample(range(300), 100))
    for index in cancelled:
        tasks[index].cancel()

    results = await asyncio.gather(*tasks, return_exceptions=True)

    for index, result in enumerate(results):
        if index in cancelled:
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert result == str(index).encode()
    assert await client.execute("GET", "pc:7") == b"7"
    client.close()


async def test_timeout_then_replies_stay_aligned(url: str) -> None:
    client = PipelinedRedis(url, timeout_seconds=0.1)
    await client.execute("SET", "pt:after", "right")

    with pytest.raises(RedisTimeoutError):
        await client.execute("BLPOP", "pt:never-filled", 0.3)
    # The late BLPOP reply arrives now and must be dropped, not handed on.
    await asyncio.sleep(0.5)
    after = await client.execute("GET", "pt:after")

    assert after == b"right"
    client.close()


async def test_error_replies_raise(url: str) -> None:
    client = PipelinedRedis(url)

    with pytest.raises(NoScriptError):
        await client.execute("EVALSHA", "0" * 40, 0)
    with pytest.raises(ResponseError):
        await client.execute("INCR", "pe:not-a-number-key", "extra-arg")
    assert await client.execute("PING") == b"PONG"
    client.close()


async def test_reconnects_after_close(url: str) -> None:
    client = PipelinedRedis(url)
    assert await client.execute("PING") == b"PONG"

    client.close()
    await asyncio.sleep(0.01)

    assert await client.execute("PING") == b"PONG"
    client.close()


async def test_unreachable_server() -> None:
    client = PipelinedRedis("redis://127.0.0.1:1/0", timeout_seconds=1)

    with pytest.raises(RedisConnectionError):
        await client.execute("PING")


async def test_selects_database(url: str) -> None:
    other = url.rsplit("/", 1)[0] + "/3"
    client = PipelinedRedis(other)
    await client.execute("SET", "pd:where", "db3")
    default = PipelinedRedis(url)

    assert await default.execute("GET", "pd:where") is None
    assert await client.execute("GET", "pd:where") == b"db3"
    client.close()
    default.close()


def test_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="redis://"):
        PipelinedRedis("rediss://127.0.0.1:6379/0")


async def test_timeout_after_reconnect(url: str) -> None:
    client = PipelinedRedis(url, timeout_seconds=0.1)
    assert await client.execute("PING") == b"PONG"
    client.close()
    await asyncio.sleep(0.01)

    # The new connection's commands are watched as the first one's were.
    with pytest.raises(RedisTimeoutError):
        await client.execute("BLPOP", "pt:never-filled-either", 0.5)
    client.close()


@pytest.mark.parametrize("password", ["", "secret"])
async def test_silent_server_times_out(password: str) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def ignore(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writers.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(ignore, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    credentials = f":{password}@" if password else ""
    client = PipelinedRedis(f"redis://{credentials}127.0.0.1:{port}/0", 0.2)
    started = time.monotonic()
    try:
        with pytest.raises(RedisTimeoutError):
            await client.execute("PING")
        # The timeout is checked every quarter of it, so at most 1.25 times.
        assert time.monotonic() - started < 2.0
    finally:
        client.close()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
