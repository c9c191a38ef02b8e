"""`parking-sale demo`: a realistic sale on embedded servers, ready to grab.

Without REDIS_URL and DATABASE_URL it starts its own redis-server and
Postgres in a throwaway folder, then loads a demo sale through the same code
as the import commands, arms it to open shortly, and serves it. Ctrl-C stops
the service and every server it started.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import os
import secrets
import signal
import tempfile
from pathlib import Path

from app import arming, database, demo_data, imports, sales, staff
from app.embedded import EmbeddedServers
from app.operations import connect, serve
from app.sales import Sale
from app.settings import Settings


async def prepare_sale(
    settings: Settings,
    folder: Path,
    opens_in_seconds: float,
    duration_minutes: float,
    registrants: int = 1000,
    per_zone_level: int = 60,
) -> tuple[Sale, Path]:
    """Create, import and arm a demo sale; return it and the registrants file."""
    spaces_file, people_file = demo_data.write_demo_files(
        folder, registrants, per_zone_level
    )
    async with connect(settings) as (pool, client):
        async with pool.acquire() as connection:
            await database.migrate(connection)
        opens_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=opens_in_seconds)
        sale = await sales.create_sale(
            pool,
            name="Riverside Gardens parking launch",
            zones=list(demo_data.ZONES),
            opens_at=opens_at,
            closes_at=opens_at + dt.timedelta(minutes=duration_minutes),
            buyer_limit=1,
            payment_hours=48,
        )
        async with pool.acquire() as connection:
            await imports.import_spaces(connection, sale, spaces_file.read_text())
            await imports.import_registrants(
                connection,
                sale,
                people_file.read_text(),
                settings.access_code_memory_kib,
            )
        sale = await arming.arm_sale(pool, client, sale.id)
    return sale, people_file


async def add_demo_staff(settings: Settings) -> dict[str, str]:
    """Create a cashier and a manager with fresh random passwords; return them.

    Only for the demo's own throwaway servers: the passwords are printed to
    the terminal that started the demo and never logged.
    """
    accounts = {role: secrets.token_urlsafe(12) for role in ("cashier", "manager")}
    async with connect(settings) as (pool, _):
        for role, password in accounts.items():
            await staff.create_staff(pool, role, role, password, actor="demo")
    return accounts


def _print_welcome(
    sale: Sale,
    people_file: Path,
    url: str,
    staff_logins: dict[str, str],
    settings: Settings,
) -> None:
    with people_file.open(encoding="utf-8") as file:
        logins = list(csv.DictReader(file))[:3]
    first = logins[0]
    shown = ", ".join(f"{r['registration_no']}/{r['access_code']}" for r in logins)
    login = (
        f'{{"registration_no": "{first["registration_no"]}", '
        f'"access_code": "{first["access_code"]}"}}'
    )
    base = f"{url}/api/sales/{sale.id}"
    if staff_logins:
        accounts = ", ".join(
            f"{name}/{password}" for name, password in staff_logins.items()
        )
        staff_line = f"Staff logins:      {accounts}"
    else:
        staff_line = "Staff logins:      `parking-sale add-staff NAME --role manager`"
    opens = f"{sale.opens_at.astimezone():%Y-%m-%d %H:%M:%S %Z}"
    closes = f"{sale.closes_at.astimezone():%H:%M:%S %Z}"
    print(
        f"""
Demo sale {sale.id} "{sale.name}" opens at {opens}
and closes at {closes}.
Service:           {url}
Buyer page:        {url}/sales/{sale.id}
Staff pages:       {url}/staff
{staff_line}
Registrants' file: {people_file}  (registration number and access code per row)
Some logins:       {shown}

To run other parking-sale commands against the demo's servers:
  export REDIS_URL={settings.redis_url} DATABASE_URL={settings.database_url}

Try it with curl:
  TOKEN=$(curl -s -X POST {base}/session \\
    -d '{login}' \\
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s {base}
  curl -s -X POST {base}/holds -H "Authorization: Bearer $TOKEN" \\
    -H "Idempotency-Key: $(date +%s%N)" -d '{{"space": "E-108"}}'
  curl -s {base}/holds/mine -H "Authorization: Bearer $TOKEN"

Press Ctrl-C to stop the service and the servers it started.
""",
        flush=True,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, settings: Settings) -> int:
    # uvicorn re-raises the signal that stopped it once it has shut down.
    # Both must then unwind through the `finally` below, which stops the
    # embedded servers, even when the shell started us with SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    servers: EmbeddedServers | None = None
    if not settings.redis_url or not settings.database_url:
        servers = EmbeddedServers(args.data_dir)
        servers.start()
        settings = settings.with_urls(servers.redis.url, servers.postgres.url)
        os.environ["REDIS_URL"] = servers.redis.url
        os.environ["DATABASE_URL"] = servers.postgres.url
    if settings.secret_key is None:
        os.environ["PARKING_SECRET_KEY"] = secrets.token_urlsafe(32)
    try:
        folder = args.data_dir or (
            servers.folder
            if servers
            else Path(tempfile.mkdtemp(prefix="parking-demo-"))
        )
        sale, people_file = asyncio.run(
            prepare_sale(
                settings,
                Path(folder) / "csv",
                args.opens_in,
                args.duration_minutes,
                args.registrants,
            )
        )
        staff_logins = asyncio.run(add_demo_staff(settings)) if servers else {}
        port = args.port if args.port is not None else settings.port
        _print_welcome(
            sale, people_file, f"http://{settings.host}:{port}", staff_logins, settings
        )
        serve(
            argparse.Namespace(host=None, port=port, workers=args.workers),
            settings,
        )
    finally:
        if servers is not None:
            servers.stop()
    return 0
