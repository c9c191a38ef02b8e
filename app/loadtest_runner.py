"""`parking-sale loadtest`: rehearse a launch on loopback and verify it.

One command prepares a sale of the chosen size with its registrants, on
embedded Redis and Postgres unless REDIS_URL and DATABASE_URL are set. It
arms the sale to open once every buyer has had time to log in, and starts
`parking-sale serve` with N workers unless `--target` names a running
service. Then it runs the Locust scenario in `loadtest/locustfile.py`
headless, and finally the verifier on the sale. The HTML report, the CSV
statistics, the holds received in responses, the verifier's report and
`chart.png` (requests per second and p99 over the run, if matplotlib is
installed) go to the output folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import ipaddress
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from app.demo import prepare_sale
from app.embedded import EmbeddedServers, free_port
from app.operations import CommandError, connect
from app.reconcile import reconcile
from app.settings import Settings
from app.verify import format_report, load_responses, verify_sale

REPOSITORY = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPOSITORY / "loadtest" / "locustfile.py"
# After the last click: time for the slowest buyer to finish, then Locust stops.
TAIL_SECONDS = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spaces",
        type=int,
        default=600,
        help="spaces in the sale, rounded up to a multiple of 10 (default 600)",
    )
    parser.add_argument(
        "--buyers",
        type=int,
        default=5000,
        help="registrants and Locust users (default 5000)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="service worker processes (default 1)"
    )
    parser.add_argument(
        "--target",
        help="URL of a running service on loopback; its REDIS_URL and "
        "DATABASE_URL must be set here too (default: start one)",
    )
    parser.add_argument(
        "--spike-seconds",
        type=float,
        default=1.0,
        help="buyers click within this many seconds after the opening (default 1)",
    )
    parser.add_argument(
        "--spawn-rate",
        type=float,
        default=100.0,
        help="Locust users started per second before the opening (default 100)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=10.0,
        help="seconds between one buyer's availability polls while waiting "
        "(default 10: 5,000 buyers polling every 2 s would send 2,500 "
        "requests per second before the launch)",
    )
    parser.add_argument(
        "--lead-seconds",
        type=float,
        help="seconds from preparing the sale to its opening "
        "(default 20 + buyers / spawn rate)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="folder for the reports (default artifacts/loadtest-<time>)",
    )
    parser.add_argument(
        "--locust-config",
        type=Path,
        help="Locust config file with more scenario options (shortlist, zipf, "
        "misbehaving, max-grabs, seed), as in loadtest/launch.conf",
    )
    parser.add_argument(
        "--locust-processes",
        type=int,
        default=1,
        help="Locust processes generating the load (default 1)",
    )
    parser.add_argument(
        "--access-code-memory-kib",
        type=int,
        default=64,
        help="Argon2 memory per access code of the test registrants, in KiB "
        "(default 64, so importing and logging in thousands stays cheap)",
    )


def _loopback_url(url: str) -> str:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise CommandError(
            f"--target {url!r} is not a loopback address; load tests run only "
            "against a service on this machine (127.0.0.1, localhost or ::1)"
        )
    return url.rstrip("/")


@dataclasses.dataclass
class _Run:
    args: argparse.Namespace
    settings: Settings
    output: Path
    servers: EmbeddedServers | None = None
    service: subprocess.Popen[bytes] | None = None


def _start_stores(run: _Run) -> None:
    if run.settings.redis_url and run.settings.database_url:
        return
    if run.args.target:
        raise CommandError(
            "with --target, set REDIS_URL and DATABASE_URL to the servers that "
            "the target service uses"
        )
    run.servers = EmbeddedServers()
    run.servers.start()
    run.settings = run.settings.with_urls(
        run.servers.redis.url, run.servers.postgres.url
    )


def _wait_for_service(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(
                f"parking-sale serve exited with code {process.returncode}; "
                "see service.log in the output folder"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise CommandError(f"parking-sale serve did not listen on port {port} in 30 s")


def _start_service(run: _Run) -> str:
    if run.args.target:
        return _loopback_url(run.args.target)
    assert run.settings.redis_url and run.settings.database_url
    port = free_port()
    environ = {
        **os.environ,
        "REDIS_URL": run.settings.redis_url,
        "DATABASE_URL": run.settings.database_url,
        "PARKING_SECRET_KEY": run.settings.secret_key or secrets.token_urlsafe(32),
        "PARKING_LOG_LEVEL": "warning",
        "PARKING_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(run.args.workers)]
    with open(run.output / "service.log", "ab") as log:
        # A session of its own, so stopping it reaches every worker process.
        run.service = subprocess.Popen(
            command,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    _wait_for_service(port, run.service)
    return f"http://127.0.0.1:{port}"


def _locust_command(run: _Run, url: str, sale_id: int, people: Path) -> list[str]:
    args = run.args
    seconds = math.ceil(args.lead_seconds + args.spike_seconds + TAIL_SECONDS)
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    if args.locust_config:
        command += ["--config", str(args.locust_config)]
    if args.locust_processes > 1:
        command += ["--processes", str(args.locust_processes)]
    command += [
        "--headless",
        "--users",
        str(args.buyers),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "10",
        "--host",
        url,
        "--html",
        str(run.output / "report.html"),
        "--csv",
        str(run.output / "stats"),
        "--csv-full-history",
        "--only-summary",
        "--sale",
        str(sale_id),
        "--registrants",
        str(people),
        "--responses-dir",
        str(run.output / "responses"),
        "--spike-seconds",
        str(args.spike_seconds),
        "--poll-seconds",
        str(args.poll_seconds),
    ]
    return command


def _run_locust(command: list[str], timeout: float) -> int:
    environ = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    process = subprocess.Popen(command, cwd=REPOSITORY, env=environ)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        print(f"parking-sale: Locust did not stop within {timeout:.0f} s; killed")
        return 1


async def _wait_until_recorded(settings: Settings, sale_id: int) -> None:
    """Wait up to 30 s for the persister to record every grant of the sale."""
    async with connect(settings) as (pool, client):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (await reconcile(pool, client, sale_id)).unrecorded_grants == 0:
                return
            await asyncio.sleep(0.5)


async def _verify(settings: Settings, sale_id: int, output: Path) -> bool:
    responses = load_responses([output / "responses"])
    async with connect(settings) as (pool, client):
        report = await verify_sale(pool, client, sale_id, responses)
    text = format_report(report)
    (output / "verify.txt").write_text(text + "\n")
    print(text, flush=True)
    return report.passed


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_service(process: subprocess.Popen[bytes]) -> None:
    """Stop the service and its workers: SIGINT, then SIGKILL after 20 s."""
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGINT)
    deadline = time.monotonic() + 20
    # poll() reaps the service once it exits, so only live processes remain.
    while process.poll() is None or _group_alive(group):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if _group_alive(group):
        # NOTE: a uvicorn worker has been seen to outlive its parent after
        # SIGINT; the kill keeps it from running on against stopped stores.
        print("parking-sale: the service did not stop within 20 s; killed it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    process.wait()


def _stop(run: _Run) -> None:
    if run.service is not None:
        _stop_service(run.service)
    if run.servers is not None:
        run.servers.stop()


def write_chart(output: Path, launch_at: float, title: str) -> None:
    """Write chart.png from Locust's stats history, or say why it was skipped."""
    history = output / "stats_stats_history.csv"
    try:
        from app import loadtest_chart
    except ImportError as exc:
        print(f"parking-sale: chart.png skipped: matplotlib is missing ({exc})")
        return
    try:
        loadtest_chart.write_chart(history, output / "chart.png", launch_at, title)
    except (OSError, ValueError) as exc:
        print(f"parking-sale: chart.png skipped: {exc}")
        return
    print(f"parking-sale: wrote {output / 'chart.png'}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Prepare, serve, load and verify; return 0 only if all went well."""
    if importlib.util.find_spec("locust") is None or not LOCUSTFILE.exists():
        raise CommandError(
            "the load test needs a checkout of the repository with the dev "
            "extras installed: pip install -e '.[dev]'"
        )
    if args.buyers < 1 or args.spaces < 1 or args.spawn_rate <= 0:
        raise CommandError("--buyers, --spaces and --spawn-rate must be positive")
    if args.lead_seconds is None:
        args.lead_seconds = 20 + args.buyers / args.spawn_rate

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = args.output or Path("artifacts") / f"loadtest-{stamp}"
    output.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.replace(
        settings, access_code_memory_kib=args.access_code_memory_kib
    )
    run = _Run(args, settings, output.resolve())

    try:
        _start_stores(run)
        sale, people = asyncio.run(
            prepare_sale(
                run.settings,
                run.output / "csv",
                opens_in_seconds=args.lead_seconds,
                duration_minutes=max(10.0, args.lead_seconds / 60 + 5),
                registrants=args.buyers,
                per_zone_level=math.ceil(args.spaces / 10),
            )
        )
        print(
            f"sale {sale.id}: opens at {sale.opens_at.astimezone():%H:%M:%S}, "
            f"{args.buyers} buyers; reports in {run.output}",
            flush=True,
        )

        url = _start_service(run)
        command = _locust_command(run, url, sale.id, people)
        locust_code = _run_locust(command, args.lead_seconds + TAIL_SECONDS + 120)

        asyncio.run(_wait_until_recorded(run.settings, sale.id))
        passed = asyncio.run(_verify(run.settings, sale.id, run.output))
    finally:
        _stop(run)
    write_chart(run.output, sale.opens_at.timestamp(), f"Launch of sale {sale.id}")
    if locust_code != 0:
        print(
            f"Locust exited with code {locust_code}: some requests got an "
            "unexpected status; see report.html and stats_failures.csv"
        )
    return 0 if passed and locust_code == 0 else 1
