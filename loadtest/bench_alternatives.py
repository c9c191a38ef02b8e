"""Benchmark the Lua grab against the two alternatives people reach for.

Three ways to decide a grab, each fed the same generated requests (buyer and
a ranked list of up to five spaces, skewed as in `loadtest.demand`) by the
same number of concurrent asyncio clients, directly against the stores:

- Redis Lua: the service's own grab script (`lua/grab.lua`) on an armed sale.
- Postgres row locks: one PL/pgSQL call per grab, `UPDATE ... WHERE holder
  IS NULL` down the ranked list and the buyer's limit checked and counted in
  the same transaction, with synchronous commit as a system of record needs.
- Redis WATCH/MULTI: optimistic locking on the buyer's count and the listed
  spaces, retried on a conflict (at most `MAX_WATCH_RETRIES` times).

For each it prints grabs per second, its ratio to the Lua script, p50 and
p99 latency, and the CPU per grab in the stores and in this client. It also
checks the invariants, counted from the replies and from the store: no
space granted twice and no buyer over their limit. Only the deciding step is
measured. The service also writes each win to Postgres, at most once per
space, whichever way it decides. The Lua script does more per call than the
alternatives, because it also stores the idempotency record and appends
each grant to the grant stream.

Run from the repository root (embedded servers unless REDIS_URL and
DATABASE_URL are set):

    .venv/bin/python loadtest/bench_alternatives.py --requests 20000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import psutil
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import WatchError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import database
from app.demo import prepare_sale
from app.embedded import EmbeddedServers
from app.keys import SaleKeys
from app.redis_store import RedisStore
from app.settings import Settings, load_settings
from loadtest.demand import Demand

MAX_WATCH_RETRIES = 50

PG_SCHEMA = """
DROP SCHEMA IF EXISTS bench_alternatives CASCADE;
CREATE SCHEMA bench_alternatives;
CREATE TABLE bench_alternatives.spaces (label text PRIMARY KEY, holder text);
CREATE TABLE bench_alternatives.buyers (
    registration_no text PRIMARY KEY,
    buyer_limit integer NOT NULL,
    held integer NOT NULL DEFAULT 0
);
-- Take the first free space of the ranked list, then count it against the
-- buyer's limit; over the limit, the exception rolls the space back.
CREATE FUNCTION bench_alternatives.grab(buyer text, labels text[])
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    wanted text;
    won text;
BEGIN
    FOREACH wanted IN ARRAY labels LOOP
        UPDATE bench_alternatives.spaces SET holder = buyer
        WHERE label = wanted AND holder IS NULL
        RETURNING label INTO won;
        IF won IS NOT NULL THEN
            UPDATE bench_alternatives.buyers SET held = held + 1
            WHERE registration_no = buyer AND held < buyer_limit;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'limit_reached' USING ERRCODE = 'P0001';
            END IF;
            RETURN won;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
"""


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    labels: list[str]
    limits: dict[str, int]
    requests: list[tuple[str, list[str]]]


class CpuMeter:
    """CPU seconds used so far by Redis, by Postgres and by this process.

    Redis reports its own CPU (INFO cpu). Postgres CPU is summed over the
    server's processes, so it is known only for an embedded server started
    here; otherwise it reads as 0 and the table notes that.
    """

    def __init__(self, redis_url: str, postgres_pid: int | None) -> None:
        self.redis_url = redis_url
        self.postgres = psutil.Process(postgres_pid) if postgres_pid else None

    async def sample(self) -> tuple[float, float]:
        """Return (CPU seconds of both stores, CPU seconds of this process)."""
        client = aioredis.Redis.from_url(self.redis_url)
        try:
            info = await client.info("cpu")
        finally:
            await client.aclose()
        store = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        if self.postgres is not None:
            for process in [self.postgres, *self.postgres.children(recursive=True)]:
                store += _cpu_seconds(process.pid)
        return store, time.process_time()


def _cpu_seconds(pid: int) -> float:
    """Return the CPU seconds of a process, from /proc/PID/schedstat (in ns).

    The user and system times in /proc/PID/stat count whole clock ticks
    (10 ms), too coarse for 64 backends that each run a few milliseconds.
    """
    try:
        with open(f"/proc/{pid}/schedstat") as file:
            return int(file.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclasses.dataclass
class Result:
    """Totals of one engine over all rounds of a workload."""

    engine: str
    seconds: float = 0.0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    grants: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    stored_holds: int = 0
    retries: int = 0
    store_cpu: float = 0.0
    client_cpu: float = 0.0

    def problems(self, limits: dict[str, int]) -> list[str]:
        """Return the invariant violations seen in the replies and the store."""
        found = []
        per_space = Counter(label for _, label in self.grants)
        doubled = [label for label, count in per_space.items() if count > 1]
        if doubled:
            found.append(f"{len(doubled)} space(s) granted twice")
        per_buyer = Counter(buyer for buyer, _ in self.grants)
        over = [b for b, count in per_buyer.items() if count > limits[b]]
        if over:
            found.append(f"{len(over)} buyer(s) over limit")
        if self.stored_holds != len(self.grants):
            found.append(
                f"store holds {self.stored_holds}, replies granted {len(self.grants)}"
            )
        gave_up = self.outcomes.get("gave_up", 0)
        if gave_up:
            found.append(f"{gave_up} gave up after {MAX_WATCH_RETRIES} conflicts")
        return found


def build_workload(
    name: str,
    labels: list[str],
    limits: dict[str, int],
    zipf: float,
    args: argparse.Namespace,
) -> Workload:
    spaces = [
        {"label": label, "price_fen": i, "level": "", "zone": ""}
        for i, label in enumerate(labels)
    ]
    demand = Demand.from_spaces(spaces, zipf)
    rng = random.Random(args.seed)
    buyers = sorted(limits)
    requests = [
        (rng.choice(buyers), demand.shortlist(rng, rng.randint(1, 5)))
        for _ in range(args.requests)
    ]
    return Workload(name, labels, limits, requests)


class Engine:
    """One way to decide grabs: `grab` returns (outcome, label granted)."""

    name = ""

    def __init__(self, settings: Settings, clients: int) -> None:
        assert settings.redis_url and settings.database_url
        self.redis_url = settings.redis_url
        self.database_url = settings.database_url
        self.clients = clients
        self.retries = 0

    async def open(self, workload: Workload) -> None:
        raise NotImplementedError

    async def grab(self, buyer: str, ranked: list[str]) -> tuple[str, str]:
        raise NotImplementedError

    async def stored_holds(self) -> int:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class LuaEngine(Engine):
    """The service's grab script, called as the service calls it."""

    name = "Redis Lua script"

    def __init__(self, settings: Settings, clients: int, sale_id: int) -> None:
        super().__init__(settings, clients)
        self.sale_id = sale_id

    async def open(self, workload: Workload) -> None:
        self.client = aioredis.Redis.from_url(
            self.redis_url, max_connections=self.clients + 8
        )
        self.store = RedisStore(self.client, 3600)

    async def grab(self, buyer: str, ranked: list[str]) -> tuple[str, str]:
        reply = await self.store.grab(self.sale_id, buyer, uuid.uuid4().hex, ranked)
        return reply.outcome, reply.label

    async def stored_holds(self) -> int:
        return int(await self.client.hlen(SaleKeys.for_sale(self.sale_id).holders))

    async def close(self) -> None:
        await self.client.aclose()


class PostgresEngine(Engine):
    """Row locks: one PL/pgSQL call per grab, in its own transaction."""

    name = "Postgres row locks"

    async def open(self, workload: Workload) -> None:
        self.pool = await database.create_pool(
            self.database_url, min_size=self.clients, max_size=self.clients
        )
        async with self.pool.acquire() as connection:
            await connection.execute(PG_SCHEMA)
            await connection.executemany(
                "INSERT INTO bench_alternatives.spaces (label) VALUES ($1)",
                [(label,) for label in workload.labels],
            )
            await connection.executemany(
                "INSERT INTO bench_alternatives.buyers (registration_no, buyer_limit)"
                " VALUES ($1, $2)",
                list(workload.limits.items()),
            )

    async def grab(self, buyer: str, ranked: list[str]) -> tuple[str, str]:
        try:
            won = await self.pool.fetchval(
                "SELECT bench_alternatives.grab($1, $2)", buyer, ranked
            )
        except asyncpg.RaiseError:
            return "limit_reached", ""
        return ("granted", won) if won else ("space_taken", "")

    async def stored_holds(self) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM bench_alternatives.spaces "
                "WHERE holder IS NOT NULL"
            )
        )

    async def close(self) -> None:
        await self.pool.execute("DROP SCHEMA bench_alternatives CASCADE")
        await self.pool.close()


class WatchEngine(Engine):
    """Optimistic locking: WATCH the buyer's count and the listed spaces."""

    name = "Redis WATCH/MULTI"
    prefix = "{bench-watch}"

    async def open(self, workload: Workload) -> None:
        self.client = aioredis.Redis.from_url(
            self.redis_url, max_connections=self.clients + 8
        )
        await self._delete_keys()
        await self.client.hset(f"{self.prefix}:limits", mapping=workload.limits)

    async def grab(self, buyer: str, ranked: list[str]) -> tuple[str, str]:
        held_key = f"{self.prefix}:held:{buyer}"
        space_keys = [f"{self.prefix}:space:{label}" for label in ranked]
        async with self.client.pipeline(transaction=True) as pipe:
            for _ in range(MAX_WATCH_RETRIES):
                try:
                    await pipe.watch(held_key, *space_keys)
                    held, *holders = await pipe.mget(held_key, *space_keys)
                    limit = await pipe.hget(f"{self.prefix}:limits", buyer)
                    if int(held or 0) >= int(limit or 0):
                        await pipe.unwatch()
                        return "limit_reached", ""
                    free = [
                        k for k, h in zip(ranked, holders, strict=True) if h is None
                    ]
                    if not free:
                        await pipe.unwatch()
                        return "space_taken", ""
                    pipe.multi()
                    pipe.set(f"{self.prefix}:space:{free[0]}", buyer)
                    pipe.incr(held_key)
                    await pipe.execute()
                    return "granted", free[0]
                except WatchError:
                    self.retries += 1
                    await pipe.reset()
        return "gave_up", ""

    async def stored_holds(self) -> int:
        count = 0
        async for _ in self.client.scan_iter(f"{self.prefix}:space:*", count=1000):
            count += 1
        return count

    async def _delete_keys(self) -> None:
        keys = [k async for k in self.client.scan_iter(f"{self.prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await self.client.delete(*keys[start : start + 1000])

    async def close(self) -> None:
        await self._delete_keys()
        await self.client.aclose()


async def drive(
    engine: Engine,
    requests: Sequence[tuple[str, list[str]]],
    clients: int,
    meter: CpuMeter,
    result: Result,
) -> None:
    """Send `requests` through the engine from `clients` tasks; add to `result`."""
    pending = iter(requests)

    async def client() -> None:
        for buyer, ranked in pending:
            started = time.perf_counter()
            outcome, label = await engine.grab(buyer, ranked)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.outcomes[outcome] += 1
            if outcome == "granted":
                result.grants.append((buyer, label))

    store_before, client_before = await meter.sample()
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds += time.perf_counter() - started
    store_after, client_after = await meter.sample()
    result.store_cpu += store_after - store_before
    result.client_cpu += client_after - client_before


async def run_engines(
    engines: list[Engine], workload: Workload, rounds: int, meter: CpuMeter
) -> list[Result]:
    """Run the workload on every engine, interleaved in rounds.

    Each round sends the next slice of the requests to every engine, in a
    rotating order, so a neighbour's load on the machine or a slow minute
    spreads over all engines instead of skewing one.
    """
    results = [Result(engine.name) for engine in engines]
    for engine in engines:
        await engine.open(workload)
    size = math.ceil(len(workload.requests) / rounds)
    for number in range(rounds):
        chunk = workload.requests[number * size : (number + 1) * size]
        for offset in range(len(engines)):
            index = (number + offset) % len(engines)
            await drive(
                engines[index], chunk, engines[index].clients, meter, results[index]
            )
    for engine, result in zip(engines, results, strict=True):
        result.stored_holds = await engine.stored_holds()
        result.retries = engine.retries
        await engine.close()
    return results


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def print_table(
    workload: Workload,
    results: list[Result],
    clients: int,
    rounds: int,
    postgres_cpu: bool,
) -> None:
    limits = workload.limits
    print(
        f"\n{workload.name}: {len(workload.labels):,} spaces, {len(limits):,} buyers, "
        f"{len(workload.requests):,} grabs, {clients} concurrent clients, "
        f"{rounds} interleaved rounds"
    )
    header = (
        f"{'engine':<20} {'grabs/s':>9} {'vs Lua':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'store us':>9} {'client us':>9} {'granted':>8} {'retries':>8}  invariants"
    )
    print(header)
    print("-" * len(header))
    count = len(workload.requests)
    base = count / results[0].seconds
    for result in results:
        rate = len(workload.requests) / result.seconds
        problems = result.problems(limits)
        print(
            f"{result.engine:<20} {rate:>9,.0f} {rate / base:>7.2f} "
            f"{statistics.median(result.latencies_ms):>8.2f} "
            f"{_percentile(result.latencies_ms, 0.99):>8.2f} "
            f"{result.store_cpu / count * 1e6:>9,.0f} "
            f"{result.client_cpu / count * 1e6:>9,.0f} "
            f"{len(result.grants):>8,} {result.retries:>8,}  "
            f"{'; '.join(problems) or 'held'}"
        )
    print(
        "store us: CPU microseconds per grab used by Redis"
        + (" and Postgres" if postgres_cpu else " (Postgres not measured)")
        + "; client us: CPU of this benchmark process per grab"
    )


async def prepare(
    settings: Settings,
    folder: Path,
    spaces: int,
    buyers: int,
) -> tuple[int, list[str], dict[str, int]]:
    """Create and arm a sale open now; return its id, labels and buyer limits."""
    sale, _ = await prepare_sale(
        settings,
        folder,
        opens_in_seconds=-1,
        duration_minutes=60,
        registrants=buyers,
        per_zone_level=math.ceil(spaces / 10),
    )
    assert settings.database_url
    connection = await asyncpg.connect(settings.database_url)
    try:
        labels = [
            r["label"]
            for r in await connection.fetch(
                "SELECT label FROM spaces WHERE sale_id = $1 ORDER BY position", sale.id
            )
        ]
        limits = {
            r["registration_no"]: r["buyer_limit"]
            for r in await connection.fetch(
                "SELECT registration_no, buyer_limit FROM registrants "
                "WHERE sale_id = $1",
                sale.id,
            )
        }
    finally:
        await connection.close()
    return sale.id, labels, limits


async def bench(
    settings: Settings, args: argparse.Namespace, postgres_pid: int | None
) -> None:
    assert settings.redis_url
    meter = CpuMeter(settings.redis_url, postgres_pid)
    # The write-heavy run spreads demand evenly (Zipf exponent 0), so few
    # grabs collide and nearly every one writes.
    scenarios = [("launch mix", args.spaces, args.buyers, args.zipf)]
    if args.large_spaces:
        scenarios.append(("write-heavy", args.large_spaces, args.large_spaces, 0.0))
    with tempfile.TemporaryDirectory(prefix="bench-alternatives-") as folder:
        for name, spaces, buyers, zipf in scenarios:
            sale_id, labels, limits = await prepare(
                settings, Path(folder) / name.replace(" ", "-"), spaces, buyers
            )
            workload = build_workload(name, labels, limits, zipf, args)
            engines: list[Engine] = [
                LuaEngine(settings, args.clients, sale_id),
                PostgresEngine(settings, args.clients),
                WatchEngine(settings, args.clients),
            ]
            results = await run_engines(engines, workload, args.rounds, meter)
            print_table(
                workload, results, args.clients, args.rounds, postgres_pid is not None
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", type=int, default=600, help="launch mix spaces")
    parser.add_argument("--buyers", type=int, default=5000, help="launch mix buyers")
    parser.add_argument(
        "--large-spaces",
        type=int,
        default=20000,
        help="spaces (and buyers) of the write-heavy run, where few grabs "
        "collide; 0 skips it",
    )
    parser.add_argument("--requests", type=int, default=20000, help="grabs per run")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="slices of the requests; each round runs every engine once",
    )
    parser.add_argument("--zipf", type=float, default=1.1, help="demand skew")
    parser.add_argument("--seed", type=int, default=7, help="workload seed")
    args = parser.parse_args()

    settings = load_settings()
    settings = dataclasses.replace(settings, access_code_memory_kib=64)
    servers = None
    postgres_pid = None
    if not settings.redis_url or not settings.database_url:
        servers = EmbeddedServers()
        servers.start()
        settings = settings.with_urls(servers.redis.url, servers.postgres.url)
        assert servers.postgres.process is not None
        postgres_pid = servers.postgres.process.pid
    try:
        # The service runs on uvloop, so the clients here do too.
        uvloop.run(bench(settings, args, postgres_pid))
    finally:
        if servers is not None:
            servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
