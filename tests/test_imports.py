"""CSV imports: every bad line reported, nothing half-imported."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from app import database, imports
from app.errors import Conflict, ImportRejected
from app.sales import Sale
from app.settings import Settings
from tests.support import make_sale, run

SALE = Sale(
    id=1,
    name="Test",
    zones=("A", "B"),
    opens_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    closes_at=dt.datetime(2030, 1, 2, tzinfo=dt.UTC),
    buyer_limit=1,
    payment_window=dt.timedelta(hours=48),
    state="draft",
    generation=0,
)

SPACES_HEADER = "label,zone,level,kind,price_yuan\n"
PEOPLE_HEADER = "registration_no,name,phone,access_code,limit\n"


def rejected(call: object) -> list[dict[str, object]]:
    with pytest.raises(ImportRejected) as caught:
        call()  # type: ignore[operator]
    return caught.value.errors


def test_parse_spaces_valid() -> None:
    rows = imports.parse_spaces(
        SPACES_HEADER + "E-108,A,B1,standard,10800\nA-1,B,B2,EV charging,9999.5\n", SALE
    )

    assert rows[0] == imports.SpaceRow("E-108", "A", "B1", "standard", 1_080_000)
    assert rows[1].kind == "ev_charging"
    assert rows[1].price_fen == 999_950


def test_parse_spaces_reports_every_bad_line() -> None:
    text = SPACES_HEADER + (
        "A-1,A,B1,standard,10800\n"  # line 2: fine
        "A-1,A,B1,standard,10800\n"  # line 3: duplicate label
        "A-2,Z,B1,standard,10800\n"  # line 4: unknown zone
        "A-3,A,B1,standard,-5\n"  # line 5: negative price
        "A-4,A,B1,standard,abc\n"  # line 6: not a number
        "A-5,A,B1,garage,100\n"  # line 7: unknown kind
        "A-6,A,B1,standard\n"  # line 8: missing column
        "bad label,A,B1,standard,100\n"  # line 9: bad label
        "A-7,A,,standard,100\n"  # line 10: empty level
        "A-8,A,B1,standard,0\n"  # line 11: zero price
        "A-9,A,B1,standard,1.001\n"  # line 12: fraction of a fen
    )

    errors = rejected(lambda: imports.parse_spaces(text, SALE))

    found = {(e["line"], e["field"]) for e in errors}
    assert found == {
        (3, "label"),
        (4, "zone"),
        (5, "price_yuan"),
        (6, "price_yuan"),
        (7, "kind"),
        (8, None),
        (9, "label"),
        (10, "level"),
        (11, "price_yuan"),
        (12, "price_yuan"),
    }
    duplicate = next(e for e in errors if e["line"] == 3)
    assert "first on line 2" in str(duplicate["message"])


@pytest.mark.parametrize(
    "price",
    [
        "1e30",
        "1E+27",
        "1_000",
        "10,5",
        "1,0000",
        ",100",
        "\uff11\uff10\uff10",  # full-width 100
        "\u0661\u0660\u0660",  # Arabic-Indic 100
        "+100",
        "100.",
        "100000001",
        "Infinity",
        "NaN",
    ],
)
def test_parse_spaces_rejects_loose_price(price: str) -> None:
    text = SPACES_HEADER + f'A-1,A,B1,standard,"{price}"\n'

    errors = rejected(lambda: imports.parse_spaces(text, SALE))

    assert [(e["line"], e["field"]) for e in errors] == [(2, "price_yuan")]


@pytest.mark.parametrize(
    ("price", "fen"),
    [("10,800.50", 1_080_050), ("1,000,000", 100_000_000), ("100000000", 10**10)],
)
def test_parse_spaces_grouped_price(price: str, fen: int) -> None:
    text = SPACES_HEADER + f'A-1,A,B1,standard,"{price}"\n'

    rows = imports.parse_spaces(text, SALE)

    assert rows[0].price_fen == fen


@pytest.mark.parametrize("limit", ["1_0", "\uff12", "+1", "1.0", "1" * 5000])
def test_parse_registrants_rejects_loose_limit(limit: str) -> None:
    text = PEOPLE_HEADER + f"R1,Wang,13800001234,abcd,{limit}\n"

    errors = rejected(lambda: imports.parse_registrants(text, SALE))

    assert [(e["line"], e["field"]) for e in errors] == [(2, "limit")]


def test_parse_spaces_wrong_header() -> None:
    errors = rejected(lambda: imports.parse_spaces("label,zone,price\nA,A,1\n", SALE))

    assert errors[0]["line"] == 1
    assert "label,zone,level,kind,price_yuan" in str(errors[0]["message"])


def test_parse_spaces_empty_file() -> None:
    errors = rejected(lambda: imports.parse_spaces("", SALE))

    assert errors[0]["line"] == 1


def test_parse_spaces_header_only() -> None:
    errors = rejected(lambda: imports.parse_spaces(SPACES_HEADER, SALE))

    assert errors[0]["line"] == 1
    assert "no spaces" in str(errors[0]["message"])


def test_rejection_counts_lines_not_errors() -> None:
    text = SPACES_HEADER + "bad label,Z,B1,garage,-1\nA-1,A,B1,standard,100\n"

    with pytest.raises(ImportRejected) as caught:
        imports.parse_spaces(text, SALE)

    assert len(caught.value.errors) == 4
    assert "has 1 bad line(s)" in caught.value.message


def test_parse_spaces_line_numbers_count_quoted_newlines() -> None:
    text = SPACES_HEADER + '"A-1",A,"B1\nsecond",standard,100\nA-2,Q,B1,standard,100\n'

    errors = rejected(lambda: imports.parse_spaces(text, SALE))

    assert (errors[-1]["line"], errors[-1]["field"]) == (4, "zone")


def test_parse_registrants_reports_every_bad_line() -> None:
    text = PEOPLE_HEADER + (
        "R1,王伟,13800001234,123456,1\n"  # line 2: fine
        "R1,李娜,13800001235,123456,1\n"  # line 3: duplicate number
        "R2,,13800001236,123456,1\n"  # line 4: empty name
        "R3,张敏,phone,123456,1\n"  # line 5: bad phone
        "R4,刘强,13800001237,,1\n"  # line 6: empty access code
        "R5,陈静,13800001238,123456,0\n"  # line 7: limit below 1
        "R6,杨洋,13800001239,123456,two\n"  # line 8: limit not a number
        "R7,黄勇,13800001240,12 34,1\n"  # line 9: space in code
    )

    errors = rejected(lambda: imports.parse_registrants(text, SALE))

    found = {(e["line"], e["field"]) for e in errors}
    assert found == {
        (3, "registration_no"),
        (4, "name"),
        (5, "phone"),
        (6, "access_code"),
        (7, "limit"),
        (8, "limit"),
        (9, "access_code"),
    }


def test_parse_rejects_control_characters() -> None:
    spaces = SPACES_HEADER + "A-1,A,B1\x00,standard,100\nA-2,A,B1,standard,100\n"
    people = PEOPLE_HEADER + "R1,Wang\x00Wei,13800001234,code\x1b1,1\n"

    space_errors = rejected(lambda: imports.parse_spaces(spaces, SALE))
    people_errors = rejected(lambda: imports.parse_registrants(people, SALE))

    assert [(e["line"], e["field"]) for e in space_errors] == [(2, "level")]
    assert "'\\x00'" in str(space_errors[0]["message"])
    assert [(e["line"], e["field"]) for e in people_errors] == [
        (2, "name"),
        (2, "access_code"),
    ]


def test_parse_registrants_default_limit_and_phone() -> None:
    sale = dataclasses.replace(SALE, buyer_limit=2)

    rows = imports.parse_registrants(
        PEOPLE_HEADER + "R1,王伟,+86 138-0000-1234,abcd,\n", sale
    )

    assert rows[0].limit == 2
    assert rows[0].phone == "+8613800001234"


def test_import_rejected_changes_nothing(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=2, arm=False))
    bad = SPACES_HEADER + "B-1,A,B1,standard,100\nB-2,Z,B1,standard,100\n"

    async def attempt() -> list[str]:
        assert settings.database_url
        pool = await database.create_pool(settings.database_url)
        try:
            async with pool.acquire() as connection:
                with pytest.raises(ImportRejected):
                    await imports.import_spaces(connection, setup.sale, bad)
            rows = await pool.fetch(
                "SELECT label FROM spaces WHERE sale_id = $1 ORDER BY position",
                setup.sale.id,
            )
            return [row["label"] for row in rows]
        finally:
            await pool.close()

    assert run(attempt()) == setup.labels


def test_import_replaces_draft_spaces(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=2, arm=False))

    async def replace() -> list[tuple[str, int]]:
        assert settings.database_url
        pool = await database.create_pool(settings.database_url)
        try:
            async with pool.acquire() as connection:
                count = await imports.import_spaces(
                    connection,
                    setup.sale,
                    SPACES_HEADER + "B-2,B,B2,large,12000\nB-1,B,B2,tandem,15000\n",
                )
                assert count == 2
            rows = await pool.fetch(
                "SELECT label, position FROM spaces WHERE sale_id = $1 "
                "ORDER BY position",
                setup.sale.id,
            )
            return [(row["label"], row["position"]) for row in rows]
        finally:
            await pool.close()

    assert run(replace()) == [("B-2", 0), ("B-1", 1)]


def test_import_into_armed_sale_rejected(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=2))

    async def attempt() -> None:
        assert settings.database_url
        pool = await database.create_pool(settings.database_url)
        try:
            async with pool.acquire() as connection:
                await imports.import_spaces(
                    connection, setup.sale, SPACES_HEADER + "A-9,A,B1,standard,1\n"
                )
        finally:
            await pool.close()

    with pytest.raises(Conflict):
        run(attempt())
