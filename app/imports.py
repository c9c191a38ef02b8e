"""CSV imports of a sale's spaces and registrants, all or nothing.

Every row is validated before anything is written; when any row is bad, the
whole file is rejected with one entry per bad line and the database is left
as it was. Line numbers count the header as line 1.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app import passwords
from app.errors import Conflict, ImportRejected
from app.inputs import control_character, is_ascii_digits, yuan_to_fen
from app.sales import KINDS, Sale
from app.types import DbConnection

SPACE_COLUMNS = ("label", "zone", "level", "kind", "price_yuan")
REGISTRANT_COLUMNS = ("registration_no", "name", "phone", "access_code", "limit")
MAX_ERRORS = 200
MAX_PRICE_FEN = 100_000_000_00

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_PHONE = re.compile(r"\+?[0-9][0-9 -]{4,24}")


@dataclasses.dataclass(frozen=True, slots=True)
class SpaceRow:
    label: str
    zone: str
    level: str
    kind: str
    price_fen: int


@dataclasses.dataclass(frozen=True, slots=True)
class RegistrantRow:
    registration_no: str
    name: str
    phone: str
    access_code: str
    limit: int


class _Problems:
    """Collects the bad lines of one file."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, line: int, field: str | None, message: str) -> None:
        self.items.append({"line": line, "field": field, "message": message})

    def raise_if_any(self, what: str) -> None:
        if self.items:
            count = len({item["line"] for item in self.items})
            shown = self.items[:MAX_ERRORS]
            raise ImportRejected(
                f"The {what} file has {count} bad line(s); nothing was imported. "
                "Fix them and upload the whole file again.",
                errors=shown,
            )


def _rows(
    text: str, columns: tuple[str, ...], problems: _Problems
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) for each data row with the right columns."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        problems.add(
            1, None, f"the file is empty; expected the header {','.join(columns)}"
        )
        return
    except csv.Error as exc:
        problems.add(1, None, f"the header is not valid CSV: {exc}")
        return
    names = tuple(name.strip().lower() for name in header)
    if names != columns:
        problems.add(
            1,
            None,
            f"the header must be {','.join(columns)}, got {','.join(header)}",
        )
        return
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(reader.line_num, None, f"not valid CSV: {exc}")
            return
        if not values or all(not value.strip() for value in values):
            continue
        if len(values) != len(columns):
            problems.add(
                reader.line_num,
                None,
                f"expected {len(columns)} values, got {len(values)}",
            )
            continue
        row = {name: value.strip() for name, value in zip(columns, values, strict=True)}
        if _has_control_characters(reader.line_num, row, problems):
            continue
        yield reader.line_num, row


def _has_control_characters(
    line: int, row: dict[str, str], problems: _Problems
) -> bool:
    """Report each field with a control character; return True if there was one."""
    found = False
    for name, value in row.items():
        character = control_character(value)
        if character is not None:
            problems.add(
                line,
                name,
                f"{name} must not contain control characters, found {character!r}",
            )
            found = True
    return found


def _price_fen(text: str) -> int | None:
    fen = yuan_to_fen(text, MAX_PRICE_FEN)
    return fen if fen is not None and fen > 0 else None


def parse_spaces(text: str, sale: Sale) -> list[SpaceRow]:
    """Validate a spaces file; raise `ImportRejected` listing every bad line."""
    problems = _Problems()
    seen: dict[str, int] = {}
    rows: list[SpaceRow] = []
    for line, row in _rows(text, SPACE_COLUMNS, problems):
        ok = True
        label = row["label"]
        if not _LABEL.fullmatch(label):
            problems.add(
                line,
                "label",
                f"label {label!r} must be 1 to 32 letters, digits, '.', '_' or '-'",
            )
            ok = False
        elif label in seen:
            problems.add(
                line, "label", f"duplicate label {label!r}, first on line {seen[label]}"
            )
            ok = False
        else:
            seen[label] = line
        if row["zone"] not in sale.zones:
            problems.add(
                line,
                "zone",
                f"unknown zone {row['zone']!r}; the sale's zones are "
                f"{', '.join(sale.zones)}",
            )
            ok = False
        if not row["level"] or len(row["level"]) > 16:
            problems.add(line, "level", "level must have 1 to 16 characters")
            ok = False
        kind = re.sub(r"[\s-]+", "_", row["kind"].lower())
        if kind not in KINDS:
            problems.add(
                line,
                "kind",
                f"unknown kind {row['kind']!r}; use one of {', '.join(KINDS)}",
            )
            ok = False
        price = _price_fen(row["price_yuan"])
        if price is None:
            problems.add(
                line,
                "price_yuan",
                f"price {row['price_yuan']!r} must be a positive number of yuan "
                "such as 10800 or 10,800.50, with at most two decimals and at "
                f"most {MAX_PRICE_FEN // 100} yuan",
            )
            ok = False
        if ok and price is not None:
            rows.append(SpaceRow(label, row["zone"], row["level"], kind, price))
    if not rows and not problems.items:
        problems.add(1, None, "the file has a header but no spaces")
    problems.raise_if_any("spaces")
    return rows


def parse_registrants(text: str, sale: Sale) -> list[RegistrantRow]:
    """Validate a registrants file; raise `ImportRejected` listing every bad line.

    An empty limit means the sale's default limit.
    """
    problems = _Problems()
    seen: dict[str, int] = {}
    rows: list[RegistrantRow] = []
    for line, row in _rows(text, REGISTRANT_COLUMNS, problems):
        ok = True
        number = row["registration_no"]
        if not _LABEL.fullmatch(number):
            problems.add(
                line,
                "registration_no",
                f"registration number {number!r} must be 1 to 32 letters, digits, "
                "'.', '_' or '-'",
            )
            ok = False
        elif number in seen:
            problems.add(
                line,
                "registration_no",
                f"duplicate registration number {number!r}, first on line "
                f"{seen[number]}",
            )
            ok = False
        else:
            seen[number] = line
        if not row["name"] or len(row["name"]) > 100:
            problems.add(line, "name", "name must have 1 to 100 characters")
            ok = False
        if not _PHONE.fullmatch(row["phone"]):
            problems.add(
                line,
                "phone",
                f"phone {row['phone']!r} must be 5 to 25 digits, with an "
                "optional leading '+'",
            )
            ok = False
        code = row["access_code"]
        if not code:
            problems.add(line, "access_code", "access code is empty")
            ok = False
        elif len(code) < 4 or len(code) > 64 or any(c.isspace() for c in code):
            problems.add(
                line,
                "access_code",
                "access code must have 4 to 64 characters and no spaces",
            )
            ok = False
        limit = sale.buyer_limit
        if row["limit"]:
            text = row["limit"]
            # The length cap keeps int() from reading a huge number.
            limit = int(text) if is_ascii_digits(text) and len(text) <= 9 else 0
            if not 1 <= limit <= 100:
                problems.add(
                    line,
                    "limit",
                    f"limit {row['limit']!r} must be a whole number from 1 to 100",
                )
                ok = False
        if ok:
            phone = re.sub(r"[ -]", "", row["phone"])
            rows.append(RegistrantRow(number, row["name"], phone, code, limit))
    if not rows and not problems.items:
        problems.add(1, None, "the file has a header but no registrants")
    problems.raise_if_any("registrants")
    return rows


def _require_draft(sale: Sale) -> None:
    if sale.state != "draft":
        raise Conflict(
            f"Sale {sale.id} is {sale.state}; spaces and registrants can only be "
            "imported while it is a draft, before arming."
        )


async def import_spaces(connection: DbConnection, sale: Sale, text: str) -> int:
    """Replace the sale's spaces with the file's; return how many were imported."""
    rows = parse_spaces(text, sale)
    async with connection.transaction():
        locked = await connection.fetchval(
            "SELECT state FROM sales WHERE id = $1 FOR UPDATE", sale.id
        )
        _require_draft(dataclasses.replace(sale, state=locked))
        await connection.execute("DELETE FROM spaces WHERE sale_id = $1", sale.id)
        await connection.copy_records_to_table(
            "spaces",
            columns=[
                "sale_id",
                "position",
                "label",
                "zone",
                "level",
                "kind",
                "price_fen",
            ],
            records=[
                (sale.id, index, r.label, r.zone, r.level, r.kind, r.price_fen)
                for index, r in enumerate(rows)
            ],
        )
    return len(rows)


def hash_access_codes(codes: Iterable[str], memory_kib: int) -> list[str]:
    """Hash codes on all cores; Argon2 releases the GIL while it works."""
    hasher = passwords.access_code_hasher(memory_kib)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(hasher.hash, codes, chunksize=64))


async def import_registrants(
    connection: DbConnection,
    sale: Sale,
    text: str,
    memory_kib: int,
) -> int:
    """Replace the sale's registrants with the file's; return how many."""
    rows = parse_registrants(text, sale)
    hashes = await asyncio.to_thread(
        hash_access_codes, [r.access_code for r in rows], memory_kib
    )
    async with connection.transaction():
        locked = await connection.fetchval(
            "SELECT state FROM sales WHERE id = $1 FOR UPDATE", sale.id
        )
        _require_draft(dataclasses.replace(sale, state=locked))
        await connection.execute("DELETE FROM registrants WHERE sale_id = $1", sale.id)
        await connection.copy_records_to_table(
            "registrants",
            columns=[
                "sale_id",
                "registration_no",
                "name",
                "phone",
                "access_code_hash",
                "buyer_limit",
            ],
            records=[
                (sale.id, r.registration_no, r.name, r.phone, code_hash, r.limit)
                for r, code_hash in zip(rows, hashes, strict=True)
            ],
        )
    return len(rows)
