"""The sales-office commands of `parking-sale`: add-staff, expire, verify-audit."""

from __future__ import annotations

import argparse
import getpass
import sys

from app import audit, staff
from app.cli_arguments import sale_id
from app.expiry import expire_overdue, sweep_armed_sales
from app.operations import CommandError, connect
from app.redis_store import RedisStore
from app.sales import get_sale
from app.settings import Settings


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the office commands to the `parking-sale` parser."""
    add_staff = commands.add_parser(
        "add-staff",
        help="create a staff account; the password is asked for, or read from "
        "PARKING_STAFF_PASSWORD",
    )
    add_staff.add_argument("name", help="username: 2 to 32 lower-case letters/digits")
    add_staff.add_argument(
        "--role", required=True, choices=staff.ROLES, help="cashier or manager"
    )

    commands.add_parser(
        "expire",
        help="expire holds not paid by their deadline and free their spaces",
    )

    verify = commands.add_parser(
        "verify-audit",
        help="recompute a sale's audit chain and name the first entry that "
        "was changed, removed or inserted",
    )
    verify.add_argument("sale", type=sale_id, help="sale id")
    verify.add_argument(
        "--final-hash",
        help="the final hash published earlier; fail if the chain ends differently",
    )


def _password(settings: Settings) -> str:
    if settings.staff_password:
        return settings.staff_password
    if not sys.stdin.isatty():
        raise CommandError(
            "no terminal to ask for the password; set PARKING_STAFF_PASSWORD"
        )
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat the password: "):
        raise CommandError("the two passwords differ; nothing was created")
    return first


async def add_staff(args: argparse.Namespace, settings: Settings) -> int:
    password = _password(settings)
    staff.validate_account(args.name, args.role, password)
    async with connect(settings) as (pool, _):
        member = await staff.create_staff(pool, args.name, args.role, password)
    print(f"created {member.role} {member.username}")
    return 0


async def expire(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as (pool, client):
        store = RedisStore(client, settings.idempotency_ttl_seconds)
        expired = await expire_overdue(pool, store)
        freed = await sweep_armed_sales(pool, store)
    print(
        f"expired {len(expired)} hold(s); also freed {freed} space(s) that Redis "
        "still gave to holds already ended"
    )
    return 0


async def verify_audit(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as (pool, _):
        await get_sale(pool, args.sale)
        verdict = await audit.verify_chain(pool, args.sale)
    if not verdict.intact:
        print(f"sale {args.sale}: audit chain BROKEN: {verdict.problem}")
        return 1
    if args.final_hash and args.final_hash.lower() != verdict.final_hash:
        print(
            f"sale {args.sale}: the chain is consistent but ends in "
            f"{verdict.final_hash}, not the published {args.final_hash}; it was "
            "rewritten after that hash was published"
        )
        return 1
    print(
        f"sale {args.sale}: audit chain intact, {verdict.entries} entries, "
        f"final hash {verdict.final_hash}"
    )
    return 0
