"""Benchmark: grab latency at a fixed offered rate, not only at saturation.

wrk is closed-loop: a slow response delays the next request, so queueing
hides in a lower rate (coordinated omission). This script first measures
the maximum with wrk. Then it offers a fixed share of it (50 % and 80 % by
default) with an open-loop generator. Request i is due at start + i / rate
whatever the responses do, goes out on the first idle keep-alive
connection, and its latency counts from when it was due. A request that
waits for a free connection, or for this process to catch up, waits on the
clock.

Both phases use the write-heavy mix: a sale far larger than the run can
sell, one space per request in order, so every grab wins and is recorded in
Postgres on the request path. The stores first finish the background work
of the bulk load (as in `bench_scale`), and a short wrk run warms the new
service up. The generator runs on uvloop in this process, on the same cores
as the service and the stores. The "lag" column is how late it dispatched
requests (p99) and "gen µs" its CPU per request, so a busy generator shows
instead of hiding.

Usage: python -m loadtest.bench_latency [--workers 1 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import uvloop

from app.embedded import EmbeddedServers
from loadtest.bench_grab import (
    SECRET,
    Prepared,
    Run,
    prepare,
    start_server,
    stop_server,
    wrk,
)
from loadtest.bench_scale import settle

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclasses.dataclass
class Level:
    offered: float
    achieved: float
    latencies_ms: list[float]
    lag_ms: list[float]
    statuses: collections.Counter[str]
    cpu_us_per_request: float


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of `values` (share 0.999 is p99.9)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Labels:
    """Space labels handed out in order, so no label is asked for twice."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.next = 0

    def take(self, count: int) -> list[str]:
        if self.next + count > len(self.labels):
            raise RuntimeError(
                f"the sale has {len(self.labels)} spaces and {self.next} are "
                f"taken; {count} more do not fit: raise --spaces"
            )
        chunk = self.labels[self.next : self.next + count]
        self.next += count
        return chunk


def grab_requests(
    host: str, path: str, tokens: list[str], labels: list[str]
) -> Iterator[bytes]:
    for index, label in enumerate(labels):
        body = f'{{"spaces": ["{label}"]}}'.encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {tokens[index % len(tokens)]}\r\n"
            f"Idempotency-Key: open-{label}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        yield head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> str:
    """Read one HTTP/1.1 response with a Content-Length; return its status."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the service closed the connection")
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status_line.split()[1].decode()


async def open_loop(
    host: str,
    port: int,
    requests: list[bytes],
    rate: float,
    pool_size: int,
    warm_up_seconds: float,
) -> Level:
    """Send `requests` at `rate` per second; time each from when it was due."""
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(pool_size):
        idle.put_nowait(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    lags: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    finished = 0.0

    async def send(request: bytes, due: float, measured: bool) -> None:
        nonlocal finished
        reader, writer = await idle.get()
        try:
            writer.write(request)
            status = await read_response(reader)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            status = type(exc).__name__
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
        idle.put_nowait((reader, writer))
        finished = loop.time()
        if measured:
            latencies.append((finished - due) * 1000)
            statuses[status] += 1

    start = loop.time() + 0.05
    cpu_started = time.process_time()
    tasks = []
    for index, request in enumerate(requests):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        measured = index / rate >= warm_up_seconds
        if measured:
            # How late this process dispatched it: its own delay, not the
            # service's (waiting for a free connection counts as latency).
            lags.append((loop.time() - due) * 1000)
        tasks.append(asyncio.create_task(send(request, due, measured)))
    await asyncio.gather(*tasks)
    cpu_seconds = time.process_time() - cpu_started

    while not idle.empty():
        idle.get_nowait()[1].close()
    measured_from = start + warm_up_seconds
    return Level(
        offered=rate,
        achieved=len(latencies) / max(finished - measured_from, 1e-6),
        latencies_ms=latencies,
        lag_ms=lags,
        statuses=statuses,
        cpu_us_per_request=cpu_seconds / len(requests) * 1e6,
    )


def measure_maximum(
    url: str,
    prepared: Prepared,
    labels: Labels,
    folder: Path,
    args: argparse.Namespace,
    warm_up: bool = False,
) -> list[Run]:
    """Run wrk closed-loop on the write-heavy mix, each run on unsold spaces."""
    runs = []
    tokens = prepared.tokens_file
    for _ in range(1 if warm_up else args.max_rounds):
        # Labels for 8,000 grabs per second. MAX_REQUESTS stops a faster
        # service's run before they wrap, and the rate stays right.
        chunk = labels.take(
            4 * args.connections if warm_up else args.max_seconds * 8000
        )
        labels_file = folder / f"labels-from-{labels.next}.txt"
        labels_file.write_text("\n".join(chunk))
        environ = {
            "GRAB_PATH": f"/api/sales/{prepared.sale_id}/holds",
            "TOKENS_FILE": str(tokens),
            "LABELS_FILE": str(labels_file),
            "SEQUENTIAL": "1",
            "MAX_REQUESTS": str(len(chunk) - 2 * args.connections),
        }
        runs.append(wrk(url, args.max_seconds, args.connections, environ))
    return runs


def bench_workers(
    workers: int,
    environ: dict[str, str],
    prepared: Prepared,
    labels: Labels,
    folder: Path,
    args: argparse.Namespace,
) -> tuple[list[Run], list[Level]]:
    process, url = start_server(environ, workers, folder / "service.log")
    try:
        # A short run opens the new service's connections before measuring.
        measure_maximum(url, prepared, labels, folder, args, warm_up=True)
        maximum_runs = measure_maximum(url, prepared, labels, folder, args)
        maximum = statistics.median(run.rps for run in maximum_runs)
        tokens = prepared.tokens_file.read_text().split()
        port = int(url.rsplit(":", 1)[1])
        path = f"/api/sales/{prepared.sale_id}/holds"
        levels = []
        for fraction in args.fractions:
            rate = maximum * fraction
            chunk = labels.take(math.ceil(rate * args.seconds))
            requests = list(grab_requests("127.0.0.1", path, tokens, chunk))
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                levels.append(
                    runner.run(
                        open_loop(
                            "127.0.0.1",
                            port,
                            requests,
                            rate,
                            args.pool,
                            args.warm_up_seconds,
                        )
                    )
                )
        return maximum_runs, levels
    finally:
        stop_server(process)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.5, 0.8],
        help="offered rates as shares of the measured maximum",
    )
    parser.add_argument(
        "--seconds", type=int, default=20, help="seconds per offered rate"
    )
    parser.add_argument(
        "--warm-up-seconds",
        type=float,
        default=2.0,
        help="first seconds of each offered rate left out of the figures",
    )
    parser.add_argument("--max-seconds", type=int, default=5)
    parser.add_argument("--max-rounds", type=int, default=2)
    parser.add_argument(
        "--connections", type=int, default=64, help="wrk connections for the maximum"
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=256,
        help="keep-alive connections of the open-loop generator",
    )
    parser.add_argument("--spaces", type=int, default=400_000)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    load_before = os.getloadavg()
    servers = EmbeddedServers()
    servers.start()
    folder = Path(tempfile.mkdtemp(prefix="bench-latency-"))
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
    all_labels = [f"L-{i:07d}" for i in range(args.spaces)]
    results: list[tuple[int, list[Run], list[Level]]] = []
    try:
        prepared = asyncio.run(
            prepare(
                servers.postgres.url,
                servers.redis.url,
                folder,
                "latency",
                all_labels,
                5000,
                100,
                1.0,
                1,
            )
        )
        settle_seconds = asyncio.run(settle(servers.postgres.url, servers.redis.url))
        print(f"stores settled in {settle_seconds:.1f} s", file=sys.stderr)
        labels = Labels(all_labels)
        for workers in args.workers:
            maximum_runs, levels = bench_workers(
                workers, environ, prepared, labels, folder, args
            )
            results.append((workers, maximum_runs, levels))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        servers.stop()

    print_table(args, results, load_before, os.getloadavg())
    return 0


def print_table(
    args: argparse.Namespace,
    results: list[tuple[int, list[Run], list[Level]]],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    print(
        f"\nwrite-heavy grabs; maximum: wrk -t1 -c{args.connections}, "
        f"{args.max_rounds} run(s) of at most {args.max_seconds} s, median; "
        f"open loop: {args.pool} keep-alive connections, {args.seconds} s per "
        f"rate, first {args.warm_up_seconds:g} s left out; {os.cpu_count()} cores"
    )
    print(
        "load average (1, 5, 15 min) before "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after "
        + ", ".join(f"{x:.2f}" for x in load_after)
    )
    print(
        f"\n{'workers':>7} {'load':<10} {'offered/s':>9} {'done/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} "
        f"{'lag ms':>7} {'gen µs':>6}  statuses"
    )
    for workers, maximum_runs, levels in results:
        for run in maximum_runs:
            print(
                f"{workers:>7} {'max (wrk)':<10} {'-':>9} {run.rps:>8.0f} "
                f"{run.p50_ms:>8.2f} {run.p99_ms:>8.2f} {'-':>9} {'-':>8} "
                f"{'-':>7} {'-':>6}  {run.statuses}"
            )
        maximum = statistics.median(run.rps for run in maximum_runs)
        for level in levels:
            share = f"{level.offered / maximum:.0%} max"
            statuses = " ".join(f"{k}={v}" for k, v in sorted(level.statuses.items()))
            print(
                f"{workers:>7} {share:<10} {level.offered:>9.0f} "
                f"{level.achieved:>8.0f} "
                f"{percentile(level.latencies_ms, 0.50):>8.2f} "
                f"{percentile(level.latencies_ms, 0.99):>8.2f} "
                f"{percentile(level.latencies_ms, 0.999):>9.2f} "
                f"{max(level.latencies_ms, default=math.nan):>8.2f} "
                f"{percentile(level.lag_ms, 0.99):>7.2f} "
                f"{level.cpu_us_per_request:>6.0f}  {statuses}"
            )


if __name__ == "__main__":
    sys.exit(main())
