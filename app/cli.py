"""The `parking-sale` command line: serve, set up sales, persist, reconcile, demo."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from app import (
    cli_arguments,
    demo,
    loadtest_runner,
    office_commands,
    operations,
    verify,
)
from app.embedded import EmbeddedError
from app.errors import STORE_UNAVAILABLE, AppError, ImportRejected
from app.logs import configure_logging
from app.settings import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int] | int]


def _moment(text: str) -> dt.datetime:
    """Parse an ISO 8601 time; a time without zone is taken as local time."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-12-05T10:00+08:00"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parking-sale",
        description="Flash sale of parking spaces. Reads REDIS_URL, DATABASE_URL "
        "and PARKING_* settings from the environment or a .env file.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to listen on (PARKING_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (PARKING_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (PARKING_WORKERS)")

    commands.add_parser("migrate", help="apply the schema migrations in sql/")

    create = commands.add_parser("create-sale", help="create a sale in state draft")
    create.add_argument("--name", required=True, help="the sale's name")
    create.add_argument(
        "--zones", required=True, help="comma-separated zones, for example A,B,C"
    )
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--opens-at",
        type=_moment,
        help="opening time, ISO 8601 with its offset, for example "
        "2026-12-05T10:00+08:00 (without one, the machine's local time)",
    )
    when.add_argument(
        "--opens-in",
        type=cli_arguments.seconds_from_now,
        help="opening in this many seconds",
    )
    create.add_argument(
        "--duration-minutes",
        type=cli_arguments.duration_minutes,
        default=60.0,
        help="minutes the sale stays open for grabbing (default 60)",
    )
    create.add_argument("--limit", type=int, default=1, help="spaces per buyer")
    create.add_argument(
        "--payment-hours",
        type=cli_arguments.payment_hours,
        default=48.0,
        help="hours a winner has to pay (default 48)",
    )

    for name, what in (
        ("import-spaces", "spaces"),
        ("import-registrants", "registrants"),
    ):
        command = commands.add_parser(name, help=f"import a sale's {what} from CSV")
        command.add_argument("sale", type=cli_arguments.sale_id, help="sale id")
        command.add_argument("file", type=Path, help="CSV file with a header line")

    arm = commands.add_parser("arm", help="load a sale into Redis for its launch")
    arm.add_argument("sale", type=cli_arguments.sale_id, help="sale id")
    arm.add_argument(
        "--force",
        action="store_true",
        help="re-arm a sale that has already opened (pauses it while loading)",
    )

    persist = commands.add_parser("persist", help="run the persister on its own")
    persist.add_argument(
        "--batch-size",
        type=int,
        default=500,
        help="grants read and recorded per transaction (default 500)",
    )
    persist.add_argument(
        "--claim-idle-ms",
        type=int,
        default=5000,
        help="claim grants another consumer has left unacknowledged this long",
    )

    reconcile = commands.add_parser("reconcile", help="compare Redis and Postgres")
    reconcile.add_argument("sale", type=cli_arguments.sale_id, help="sale id")

    verify_command = commands.add_parser(
        "verify", help="check a sale's invariants after a launch or a load test"
    )
    verify_command.add_argument("sale", type=cli_arguments.sale_id, help="sale id")
    verify_command.add_argument(
        "--responses",
        type=Path,
        action="append",
        help="JSON-lines file of the holds that clients received in 201/202 "
        "responses, or a folder of *.jsonl files; repeatable",
    )

    loadtest_command = commands.add_parser(
        "loadtest",
        help="rehearse a launch: prepare a sale, serve it, run Locust, verify",
    )
    loadtest_runner.add_arguments(loadtest_command)

    demo_command = commands.add_parser(
        "demo", help="run the service with a demo sale on embedded servers"
    )
    demo_command.add_argument(
        "--opens-in",
        type=cli_arguments.seconds_from_now,
        default=120.0,
        help="seconds from now until the demo sale opens (default 120)",
    )
    demo_command.add_argument(
        "--duration-minutes",
        type=cli_arguments.duration_minutes,
        default=60.0,
        help="minutes the demo sale stays open (default 60)",
    )
    demo_command.add_argument("--port", type=int, help="port (PARKING_PORT)")
    demo_command.add_argument("--workers", type=int, help="workers (PARKING_WORKERS)")
    demo_command.add_argument(
        "--registrants", type=int, default=1000, help="registrants (default 1000)"
    )
    demo_command.add_argument(
        "--data-dir",
        type=Path,
        help="keep the demo's servers and CSV files in this folder",
    )
    office_commands.add_parsers(commands)
    return parser


COMMANDS: dict[str, Command] = {
    "serve": operations.serve,
    "migrate": operations.migrate,
    "create-sale": operations.create_sale,
    "import-spaces": operations.import_spaces,
    "import-registrants": operations.import_registrants,
    "arm": operations.arm,
    "persist": operations.persist,
    "reconcile": operations.reconcile,
    "verify": verify.run,
    "add-staff": office_commands.add_staff,
    "expire": office_commands.expire,
    "verify-audit": office_commands.verify_audit,
    "loadtest": loadtest_runner.run,
    "demo": demo.run,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"parking-sale: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        result = COMMANDS[args.command](args, settings)
        if asyncio.iscoroutine(result):
            return int(asyncio.run(result))
        return int(result)
    except ImportRejected as exc:
        print(f"parking-sale: {exc.message}", file=sys.stderr)
        for problem in exc.errors:
            field = f" ({problem['field']})" if problem["field"] else ""
            print(
                f"  line {problem['line']}{field}: {problem['message']}",
                file=sys.stderr,
            )
        return 1
    except (AppError, operations.CommandError, EmbeddedError) as exc:
        print(f"parking-sale: {exc}", file=sys.stderr)
        return 1
    except STORE_UNAVAILABLE as exc:
        print(
            f"parking-sale: cannot reach Redis or Postgres ({exc!r}); check "
            "REDIS_URL and DATABASE_URL and that both servers are running.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
