"""The verifier: after a load test or any launch, check the sale's invariants.

For one sale it checks, read-only, that no space is held twice, that no
buyer holds more than their limit, that every hold sent to a client (201,
or 202 pending) is recorded in Postgres for the same space and buyer,
that Redis and Postgres agree (`app.reconcile`), and that queue numbers are
unique and run from 1 with no gap. `parking-sale verify SALE` prints the
report and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.keys import SaleKeys
from app.operations import CommandError, connect
from app.reconcile import reconcile
from app.sales import get_sale
from app.settings import Settings
from app.types import DbExecutor

LIVE = "('held', 'paid', 'signed')"
CHECKS = {
    "space_held_twice": "no space held twice",
    "buyer_over_limit": "no buyer over their limit",
    "response_not_recorded": "every 201/202 response names a hold in Postgres",
    "stores_disagree": "Redis and Postgres agree",
    "queue_numbers": "queue numbers unique and gap-free",
}
_STREAM_PAGE = 1000
_SHOWN_PER_CHECK = 20


class VerifyError(CommandError):
    """A responses file cannot be read; the message names the file and line."""


@dataclasses.dataclass(frozen=True, slots=True)
class HoldResponse:
    """A hold the service sent to a client in a 201 or 202 response."""

    sale_id: int
    hold_id: str
    label: str
    registration_no: str
    status: int


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    check: str
    detail: str


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyReport:
    sale_id: int
    live_holds: int
    responses: Counter[int]
    queue_numbers: int
    violations: list[Violation]

    @property
    def passed(self) -> bool:
        return not self.violations

    def failed(self, check: str) -> list[str]:
        """Return the details of the violations of one check."""
        return [v.detail for v in self.violations if v.check == check]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _response_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.jsonl")))
        elif path.is_file():
            files.append(path)
        else:
            raise VerifyError(f"responses file {str(path)!r} was not found")
    return files


def load_responses(paths: Iterable[Path]) -> list[HoldResponse]:
    """Read JSON-lines responses files (or folders of `*.jsonl` files).

    Each line is `{"sale": 1, "hold": "1-7", "space": "E-108",
    "buyer": "R0001", "status": 201}`. Raises `VerifyError` on a bad line.
    """
    responses: list[HoldResponse] = []
    for path in _response_files(paths):
        with path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                    responses.append(
                        HoldResponse(
                            sale_id=int(row["sale"]),
                            hold_id=str(row["hold"]),
                            label=str(row["space"]),
                            registration_no=str(row["buyer"]),
                            status=int(row["status"]),
                        )
                    )
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise VerifyError(
                        f"{path}:{number}: expected a JSON object with sale, hold, "
                        f"space, buyer and status, got {line[:200]!r}"
                    ) from None
    return responses


async def _spaces_held_twice(
    db: DbExecutor, client: aioredis.Redis, sale_id: int
) -> list[str]:
    found = [
        f"space {row['label']} has {len(row['holds'])} live holds in Postgres: "
        + ", ".join(row["holds"])
        for row in await db.fetch(
            f"""
            SELECT s.label, array_agg(h.id ORDER BY h.id) AS holds
            FROM holds h JOIN spaces s ON s.id = h.space_id
            WHERE h.sale_id = $1 AND h.status IN {LIVE}
            GROUP BY s.label HAVING count(*) > 1 ORDER BY s.label
            """,
            sale_id,
        )
    ]

    # Redis may grant a space again only after each earlier hold on it ended,
    # so the grant stream names a space at most once more than its ended holds.
    granted: Counter[str] = Counter()
    keys = SaleKeys.for_sale(sale_id)
    start = "-"
    while True:
        page: list[Any] = (
            await client.xrange(keys.grants, min=start, count=_STREAM_PAGE) or []
        )
        for _, fields in page:
            granted[_text(fields[b"label"])] += 1
        if len(page) < _STREAM_PAGE:
            break
        start = "(" + _text(page[-1][0])
    ended = {
        row["label"]: row["ended"]
        for row in await db.fetch(
            """
            SELECT s.label, count(*) AS ended
            FROM holds h JOIN spaces s ON s.id = h.space_id
            WHERE h.sale_id = $1 AND h.status IN ('cancelled', 'expired')
            GROUP BY s.label
            """,
            sale_id,
        )
    }
    for label, count in sorted(granted.items()):
        if count > ended.get(label, 0) + 1:
            found.append(
                f"space {label} was granted {count} times in Redis, but only "
                f"{ended.get(label, 0)} of its holds ended"
            )
    return found


async def _buyers_over_limit(
    db: DbExecutor, client: aioredis.Redis, sale_id: int
) -> list[str]:
    found = [
        f"buyer {row['registration_no']} has {row['live']} live holds in Postgres, "
        f"limit {row['buyer_limit']}"
        for row in await db.fetch(
            f"""
            SELECT r.registration_no, r.buyer_limit, count(*) AS live
            FROM holds h JOIN registrants r ON r.id = h.registrant_id
            WHERE h.sale_id = $1 AND h.status IN {LIVE}
            GROUP BY r.id HAVING count(*) > r.buyer_limit
            ORDER BY r.registration_no
            """,
            sale_id,
        )
    ]
    keys = SaleKeys.for_sale(sale_id)
    limits = await client.hgetall(keys.limits)
    for number, count in sorted((await client.hgetall(keys.counts)).items()):
        limit = int(limits.get(number, 0))
        if int(count) > limit:
            found.append(
                f"buyer {_text(number)} counts {int(count)} holds in Redis, "
                f"limit {limit}"
            )
    return found


async def _responses_not_recorded(
    db: DbExecutor, sale_id: int, responses: list[HoldResponse]
) -> list[str]:
    rows = await db.fetch(
        """
        SELECT h.id, s.label, r.registration_no
        FROM holds h
        JOIN spaces s ON s.id = h.space_id
        JOIN registrants r ON r.id = h.registrant_id
        WHERE h.sale_id = $1 AND h.id = ANY($2::text[])
        """,
        sale_id,
        [response.hold_id for response in responses],
    )
    recorded = {row["id"]: (row["label"], row["registration_no"]) for row in rows}
    found = []
    for response in responses:
        sent = (
            f"{response.status} response: hold {response.hold_id} of {response.label} "
        )
        sent += f"for buyer {response.registration_no}"
        stored = recorded.get(response.hold_id)
        if stored is None:
            found.append(f"{sent}, but Postgres has no such hold")
        elif stored != (response.label, response.registration_no):
            found.append(
                f"{sent}, but Postgres records it as {stored[0]} for buyer {stored[1]}"
            )
    return found


async def _queue_number_problems(db: DbExecutor, sale_id: int) -> tuple[int, list[str]]:
    rows = await db.fetch(
        """
        SELECT queue_no, array_agg(id ORDER BY id) AS holds
        FROM holds WHERE sale_id = $1 AND queue_no IS NOT NULL
        GROUP BY queue_no ORDER BY queue_no
        """,
        sale_id,
    )
    found = [
        f"queue number {row['queue_no']:03d} was issued {len(row['holds'])} times: "
        + ", ".join(row["holds"])
        for row in rows
        if len(row["holds"]) > 1
    ]
    issued = {row["queue_no"] for row in rows}
    missing = sorted(set(range(1, max(issued, default=0) + 1)) - issued)
    if missing:
        shown = ", ".join(f"{number:03d}" for number in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        found.append(f"queue numbers missing below the highest: {shown}{more}")
    return len(issued), found


async def verify_sale(
    db: DbExecutor,
    client: aioredis.Redis,
    sale_id: int,
    responses: Iterable[HoldResponse] = (),
) -> VerifyReport:
    """Run every check on one sale and return the report; changes nothing."""
    mine = [response for response in responses if response.sale_id == sale_id]
    violations: list[Violation] = []

    def add(check: str, details: Iterable[str]) -> None:
        violations.extend(Violation(check, detail) for detail in details)

    add("space_held_twice", await _spaces_held_twice(db, client, sale_id))
    add("buyer_over_limit", await _buyers_over_limit(db, client, sale_id))
    add("response_not_recorded", await _responses_not_recorded(db, sale_id, mine))
    stores = await reconcile(db, client, sale_id)
    add("stores_disagree", stores.differences)
    issued, problems = await _queue_number_problems(db, sale_id)
    add("queue_numbers", problems)
    return VerifyReport(
        sale_id=sale_id,
        live_holds=stores.live_in_postgres,
        responses=Counter(response.status for response in mine),
        queue_numbers=issued,
        violations=violations,
    )


def format_report(report: VerifyReport) -> str:
    """Render the report as a few lines: one per check, then its violations."""
    sent = ", ".join(f"{n} x {s}" for s, n in sorted(report.responses.items()))
    lines = [
        f"sale {report.sale_id}: {report.live_holds} live hold(s), responses checked: "
        f"{sent or 'none'}, {report.queue_numbers} queue number(s) issued"
    ]
    for check, title in CHECKS.items():
        details = report.failed(check)
        lines.append(f"  {'FAIL' if details else 'ok  '}  {title}")
        lines.extend(f"          {detail}" for detail in details[:_SHOWN_PER_CHECK])
        if len(details) > _SHOWN_PER_CHECK:
            lines.append(f"          ... {len(details) - _SHOWN_PER_CHECK} more")
    verdict = "passed" if report.passed else f"{len(report.violations)} violation(s)"
    lines.append(f"verification {verdict}")
    return "\n".join(lines)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """`parking-sale verify SALE [--responses PATH ...]`: exit 1 on any violation."""
    responses = load_responses(args.responses or [])
    async with connect(settings) as (pool, client):
        await get_sale(pool, args.sale)
        report = await verify_sale(pool, client, args.sale, responses)
    print(format_report(report))
    return 0 if report.passed else 1
