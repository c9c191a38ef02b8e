"""Benchmark: how import, arming, Redis memory and grab cost grow with sale size.

For each size it creates a sale of N spaces with 10 N registrants on its own
embedded Redis and Postgres, and measures:

- import time of the spaces and of the registrants (most of the latter is
  Argon2 hashing of the access codes, at `--access-code-memory-kib`),
- arming time, and the Redis memory that arming adds: INFO `used_memory`
  after FLUSHALL and after arming,
- bytes per space and per registrant, from MEMORY USAGE (SAMPLES 0, so
  exact) of the keys that hold each: the `spaces` hash and the `taken`
  bitmap per space, the `limits` hash per registrant,
- grab throughput with wrk on a write-heavy mix: one label per request in
  order, so every grab wins and is recorded in Postgres on the request path.
  A run stops after `--seconds` or just before the sale would sell out, and
  the sale is reset before each run (holds deleted, sale re-armed). A short
  warm-up run opens the new service's connections first, and after each
  reset a run on the spaces list reloads the workers' catalogs. Unless
  `--no-settle`, the grabs wait until the stores have finished the
  background work that the bulk load started.

Usage: python -m loadtest.bench_scale [--sizes 1000 10000 100000] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from app import arming, database, demo_data, imports, sales
from app.embedded import EmbeddedServers
from app.keys import SaleKeys
from app.sessions import BuyerSession, BuyerSessions
from loadtest.bench_grab import SECRET, Run, start_server, stop_server, wrk

# Tokens that wrk picks from: enough distinct buyers that no buyer's limit
# or idempotency record becomes a hot key.
TOKENS = 5000
BUYER_LIMIT = 100


@dataclasses.dataclass
class Sized:
    spaces: int
    registrants: int
    sale_id: int = 0
    import_spaces_s: float = 0.0
    import_registrants_s: float = 0.0
    arm_s: float = 0.0
    memory_added: int = 0
    space_keys_bytes: int = 0
    limits_bytes: int = 0
    settle_s: float = math.nan
    grabs: dict[int, list[Run]] = dataclasses.field(default_factory=dict)


async def _used_memory(client: aioredis.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def load_sale(
    database_url: str, redis_url: str, sized: Sized, memory_kib: int
) -> None:
    """Create, import and arm a sale of `sized`'s size, timing each step."""
    pool = await database.create_pool(database_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with pool.acquire() as connection:
            await database.migrate(connection)
        await client.flushall()
        before = await _used_memory(client)

        now = dt.datetime.now(dt.UTC)
        sale = await sales.create_sale(
            pool,
            f"scale-{sized.spaces}",
            list(demo_data.ZONES),
            now - dt.timedelta(seconds=1),
            now + dt.timedelta(hours=2),
            buyer_limit=BUYER_LIMIT,
        )
        space_lines = ["label,zone,level,kind,price_yuan"]
        space_lines += [f"S-{i:07d},A,B1,standard,10000" for i in range(sized.spaces)]
        people = ["registration_no,name,phone,access_code,limit"]
        people += [
            f"B{i:07d},Buyer {i},13800000000,code{i},{BUYER_LIMIT}"
            for i in range(sized.registrants)
        ]

        started = time.perf_counter()
        async with pool.acquire() as connection:
            await imports.import_spaces(connection, sale, "\n".join(space_lines))
            spaces_done = time.perf_counter()
            await imports.import_registrants(
                connection, sale, "\n".join(people), memory_kib
            )
        registrants_done = time.perf_counter()
        await arming.arm_sale(pool, client, sale.id)
        armed = time.perf_counter()

        keys = SaleKeys.for_sale(sale.id)
        sized.sale_id = sale.id
        sized.import_spaces_s = spaces_done - started
        sized.import_registrants_s = registrants_done - spaces_done
        sized.arm_s = armed - registrants_done
        sized.memory_added = await _used_memory(client) - before
        sized.space_keys_bytes = int(
            await client.memory_usage(keys.spaces, samples=0) or 0
        ) + int(await client.memory_usage(keys.taken, samples=0) or 0)
        sized.limits_bytes = int(await client.memory_usage(keys.limits, samples=0) or 0)
    finally:
        await client.aclose()
        await pool.close()


async def settle(database_url: str, redis_url: str) -> float:
    """Finish the background work a bulk load starts; return the seconds taken.

    After importing a million rows Postgres has a checkpoint and autovacuum
    ahead of it, and Redis has the whole sale in its append-only file, which
    would soon trigger a rewrite of it. A real sale is armed well before it
    opens, so by then that work is done.
    """
    started = time.perf_counter()
    connection = await asyncpg.connect(database_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await connection.execute("VACUUM ANALYZE")
        await connection.execute("CHECKPOINT")
        # Rewrite now, so the file is compact and no rewrite starts mid-run.
        await client.bgrewriteaof()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            info = await client.info("persistence")
            if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]):
                break
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
        await connection.close()
    return time.perf_counter() - started


async def reset_sale(database_url: str, redis_url: str, sale_id: int) -> None:
    """Free every space again: wait for the persister, delete holds, re-arm."""
    pool = await database.create_pool(database_url)
    client = aioredis.Redis.from_url(redis_url)
    keys = SaleKeys.for_sale(sale_id)
    try:
        # A grant the persister has not acknowledged yet would come back as
        # a hold after the delete, so wait until its group has read them all.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            groups = await client.xinfo_groups(keys.grants)
            if all(g["pending"] == 0 and not g.get("lag") for g in groups):
                break
            await asyncio.sleep(0.2)
        await pool.execute("DELETE FROM holds WHERE sale_id = $1", sale_id)
        await arming.arm_sale(pool, client, sale_id, force=True)
    finally:
        await client.aclose()
        await pool.close()


def write_inputs(folder: Path, sized: Sized) -> tuple[Path, Path]:
    signer = BuyerSessions(SECRET, 86400)
    tokens_file = folder / f"scale-{sized.spaces}-tokens.txt"
    tokens_file.write_text(
        "\n".join(
            signer.issue(BuyerSession(sized.sale_id, f"B{i:07d}"))
            for i in range(min(TOKENS, sized.registrants))
        )
    )
    labels_file = folder / f"scale-{sized.spaces}-labels.txt"
    labels_file.write_text("\n".join(f"S-{i:07d}" for i in range(sized.spaces)))
    return tokens_file, labels_file


def bench_grabs(
    args: argparse.Namespace,
    environ: dict[str, str],
    servers_urls: tuple[str, str],
    sized: Sized,
    folder: Path,
) -> None:
    redis_url, database_url = servers_urls
    tokens_file, labels_file = write_inputs(folder, sized)
    wrk_environ = {
        "GRAB_PATH": f"/api/sales/{sized.sale_id}/holds",
        "TOKENS_FILE": str(tokens_file),
        "LABELS_FILE": str(labels_file),
        "SEQUENTIAL": "1",
        # Requests in flight when a thread stops still get a label, so stop
        # early enough that none of them wraps round to a sold space.
        "MAX_REQUESTS": str(max(1, sized.spaces - 2 * args.connections)),
    }
    # The first grabs of a fresh service open its Postgres and Redis
    # connections, so a short warm-up run precedes the measured ones.
    warm_up = {**wrk_environ, "MAX_REQUESTS": str(2 * args.connections)}
    for workers in args.workers:
        process, url = start_server(environ, workers, folder / "service.log")
        try:
            wrk(url, 1, args.connections, warm_up)
            runs: list[Run] = []
            for _ in range(args.rounds):
                asyncio.run(reset_sale(database_url, redis_url, sized.sale_id))
                if args.settle:
                    # Re-arming appends the whole sale to Redis's append-only
                    # file again, which would soon start a rewrite.
                    asyncio.run(settle(database_url, redis_url))
                # Re-arming also makes each worker reload the sale's spaces
                # into its catalog on the next request, which blocks it for a
                # time that grows with the sale. A real sale loads them while
                # buyers wait for the opening, so do it before measuring.
                wrk(f"{url}/api/sales/{sized.sale_id}/spaces", 1, 8)
                runs.append(wrk(url, args.seconds, args.connections, wrk_environ))
            sized.grabs[workers] = runs
        finally:
            stop_server(process)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1000, 10_000, 100_000],
        help="spaces per sale; each sale gets ten times as many registrants",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--rounds", type=int, default=2, help="wrk runs per worker count"
    )
    parser.add_argument(
        "--seconds", type=int, default=5, help="maximum length of a wrk run, in seconds"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--no-settle",
        dest="settle",
        action="store_false",
        help="grab right after arming, without first running VACUUM ANALYZE "
        "and CHECKPOINT and waiting for Redis to finish rewriting its "
        "append-only file",
    )
    parser.add_argument(
        "--access-code-memory-kib",
        type=int,
        default=64,
        help="Argon2 memory per access code, in KiB (default 64: the service's "
        "default costs far more, and here only import time depends on it)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    load_before = os.getloadavg()
    servers = EmbeddedServers()
    servers.start()
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    environ = {
        **os.environ,
        "REDIS_URL": servers.redis.url,
        "DATABASE_URL": servers.postgres.url,
        "PARKING_SECRET_KEY": SECRET,
        "PARKING_RATE_PER_SECOND": "10000",
        "PARKING_RATE_BURST": "100000",
        "PARKING_LOG_LEVEL": "warning",
        "PARKING_RUN_EXPIRER": "false",
    }
    results: list[Sized] = []
    try:
        for size in args.sizes:
            sized = Sized(spaces=size, registrants=10 * size)
            asyncio.run(
                load_sale(
                    servers.postgres.url,
                    servers.redis.url,
                    sized,
                    args.access_code_memory_kib,
                )
            )
            if args.settle:
                sized.settle_s = asyncio.run(
                    settle(servers.postgres.url, servers.redis.url)
                )
            bench_grabs(
                args,
                environ,
                (servers.redis.url, servers.postgres.url),
                sized,
                folder,
            )
            results.append(sized)
            print(f"size {size}: done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        servers.stop()

    print_tables(args, results, load_before, os.getloadavg())
    return 0


def print_tables(
    args: argparse.Namespace,
    results: list[Sized],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()[2]
    print(
        f"\nsizes {', '.join(str(s) for s in args.sizes)} spaces, registrants "
        f"10x; access codes hashed with Argon2id at "
        f"{args.access_code_memory_kib} KiB; {os.cpu_count()} cores; "
        f"redis-server {redis_version}"
    )
    print(
        "load average (1, 5, 15 min) before "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after "
        + ", ".join(f"{x:.2f}" for x in load_after)
    )

    print(
        f"\n{'spaces':>8} {'registrants':>11} {'import sp s':>11} "
        f"{'import reg s':>12} {'arm s':>7} {'arm MiB':>8} {'B/space':>8} "
        f"{'B/registrant':>12} {'settle s':>8}"
    )
    for sized in results:
        print(
            f"{sized.spaces:>8} {sized.registrants:>11} "
            f"{sized.import_spaces_s:>11.2f} {sized.import_registrants_s:>12.2f} "
            f"{sized.arm_s:>7.2f} {sized.memory_added / 2**20:>8.1f} "
            f"{sized.space_keys_bytes / sized.spaces:>8.1f} "
            f"{sized.limits_bytes / sized.registrants:>12.1f} "
            f"{sized.settle_s:>8.1f}"
        )

    print(
        f"\ngrabs, write-heavy (every grab wins), wrk -t1 -c{args.connections}, "
        f"at most {args.seconds} s per run, {args.rounds} run(s) each"
    )
    print(
        f"{'spaces':>8} {'workers':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  "
        "statuses"
    )
    for sized in results:
        for workers, runs in sized.grabs.items():
            for run in runs:
                print(
                    f"{sized.spaces:>8} {workers:>7} {run.rps:>9.0f} "
                    f"{run.p50_ms:>8.2f} {run.p99_ms:>8.2f}  {run.statuses}"
                )


if __name__ == "__main__":
    sys.exit(main())
