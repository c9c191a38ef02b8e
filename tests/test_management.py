"""Sale management over real HTTP: create, upload CSV, arm, pause, resume,
close, and the live summary, each written to the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.office import add_member, grab_spaces, login, stores
from tests.support import Buyer, make_sale, registrant_csv, run, space_csv


@pytest.fixture
def manager(http: httpx.Client, settings: Settings) -> dict[str, str]:
    return login(http, run(add_member(settings, "manager")))


def sale_body(**changes: Any) -> dict[str, Any]:
    opens = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    body: dict[str, Any] = {
        "name": "Office test sale",
        "zones": ["A", "B"],
        "opens_at": opens.isoformat(),
        "closes_at": (opens + dt.timedelta(hours=1)).isoformat(),
        "limit": 1,
        "payment_hours": 48,
    }
    body.update(changes)
    return body


def audit_actions(settings: Settings, sale_id: int) -> list[str]:
    async def read() -> list[str]:
        async with stores(settings, max_size=1) as (pool, _):
            rows = await pool.fetch(
                "SELECT action FROM audit_log WHERE sale_id = $1 ORDER BY seq",
                sale_id,
            )
            return [row["action"] for row in rows]

    return run(read())


def upload(
    http: httpx.Client, headers: dict[str, str], sale: int, what: str, text: str
) -> httpx.Response:
    return http.post(
        f"/api/staff/sales/{sale}/{what}",
        files={"file": (f"{what}.csv", text.encode(), "text/csv")},
        headers=headers,
    )


def test_sale_lifecycle(
    http: httpx.Client, settings: Settings, manager: dict[str, str]
) -> None:
    created = http.post("/api/staff/sales", json=sale_body(), headers=manager)
    assert created.status_code == 201, created.text
    sale = created.json()["sale"]
    assert created.json()["state"] == "draft"
    assert created.json()["released_to"] == "market"

    buyers = [Buyer(f"M{sale}-{i}", f"code{i:04d}", 1) for i in range(3)]
    spaces = upload(http, manager, sale, "spaces", space_csv(["A-1", "A-2"]))
    people = upload(http, manager, sale, "registrants", registrant_csv(buyers))
    assert spaces.status_code == 201
    assert spaces.json()["spaces"] == 2
    assert people.status_code == 201
    assert people.json()["registrants"] == 3

    armed = http.post(f"/api/staff/sales/{sale}/arm", headers=manager)
    paused = http.post(f"/api/staff/sales/{sale}/pause", headers=manager)
    paused_again = http.post(f"/api/staff/sales/{sale}/pause", headers=manager)
    assert armed.status_code == 200
    assert armed.json()["state"] == "armed"
    assert paused.json()["state"] == "paused"
    assert paused_again.status_code == 409
    assert "needs a sale that is armed" in paused_again.json()["message"]

    async def grab_now() -> str:
        async with stores(settings, max_size=1) as (_, store):
            reply = await store.grab(sale, buyers[0].registration_no, "k1", ["A-1"])
            return reply.outcome

    assert run(grab_now()) == "sale_paused"
    resumed = http.post(f"/api/staff/sales/{sale}/resume", headers=manager)
    assert resumed.json()["state"] == "armed"
    assert run(grab_now()) == "granted"
    closed = http.post(f"/api/staff/sales/{sale}/close", headers=manager)
    assert closed.json()["state"] == "closed"

    assert audit_actions(settings, sale) == [
        "sale_created",
        "spaces_imported",
        "registrants_imported",
        "sale_armed",
        "sale_paused",
        "sale_resumed",
        "sale_closed",
    ]


def test_upload_reports_every_bad_line(
    http: httpx.Client, settings: Settings, manager: dict[str, str]
) -> None:
    sale = http.post("/api/staff/sales", json=sale_body(), headers=manager).json()
    text = (
        "label,zone,level,kind,price_yuan\n"
        "A-1,A,B1,standard,100\n"
        "A-2,Z,B1,standard,100\n"
        "A-3,A,B1,rocket,100\n"
        "A-1,A,B1,standard,-4\n"
    )

    response = upload(http, manager, sale["sale"], "spaces", text)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_csv"
    lines = [(e["line"], e["field"]) for e in response.json()["errors"]]
    assert lines == [(3, "zone"), (4, "kind"), (5, "label"), (5, "price_yuan")]
    assert audit_actions(settings, sale["sale"]) == ["sale_created"]

    async def count() -> int:
        async with stores(settings, max_size=1) as (pool, _):
            value = await pool.fetchval(
                "SELECT count(*) FROM spaces WHERE sale_id = $1", sale["sale"]
            )
            return int(value)

    assert run(count()) == 0


def test_upload_rejects_control_characters(
    http: httpx.Client, settings: Settings, manager: dict[str, str]
) -> None:
    sale = http.post("/api/staff/sales", json=sale_body(), headers=manager).json()
    text = "label,zone,level,kind,price_yuan\nA-1,A,B\x001,standard,100\n"

    response = upload(http, manager, sale["sale"], "spaces", text)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_csv"
    problems = response.json()["errors"]
    assert [(e["line"], e["field"]) for e in problems] == [(2, "level")]
    assert "control characters" in problems[0]["message"]
    assert audit_actions(settings, sale["sale"]) == ["sale_created"]


def test_upload_needs_file_field(
    http: httpx.Client, manager: dict[str, str], settings: Settings
) -> None:
    sale = http.post("/api/staff/sales", json=sale_body(), headers=manager).json()
    path = f"/api/staff/sales/{sale['sale']}/spaces"

    wrong_field = http.post(
        path, files={"other": ("x.csv", b"label\n", "text/csv")}, headers=manager
    )
    as_json = http.post(path, json={"csv": "label"}, headers=manager)
    plain = http.post(
        path,
        content=space_csv(["A-9"]).encode(),
        headers={**manager, "Content-Type": "text/csv"},
    )

    assert wrong_field.status_code == 400
    assert wrong_field.json()["field"] == "file"
    assert as_json.status_code == 400
    assert plain.status_code == 201


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "Launch\u0000"}, "name"),
        ({"zones": "A,B"}, "zones"),
        ({"zones": ["A", "A"]}, "zones"),
        ({"opens_at": "tomorrow"}, "opens_at"),
        ({"opens_at": "2026-12-05T10:00:00"}, "opens_at"),
        ({"closes_at": "2000-01-01T00:00:00+00:00"}, "closes_at"),
        # Year 10000 once converted to UTC.
        ({"closes_at": "9999-12-31T23:59:59-14:00"}, "closes_at"),
        ({"opens_at": "1999-12-31T23:59:59+00:00"}, "opens_at"),
        ({"zones": ["A, B"]}, "zones"),
        ({"zones": ["A\u0000"]}, "zones"),
        ({"zones": [" A"]}, "zones"),
        ({"zones": ["A" * 17]}, "zones"),
        ({"zones": []}, "zones"),
        ({"payment_hours": 0.0000001}, "payment_hours"),
        ({"payment_hours": 0.49}, "payment_hours"),
        ({"limit": 0}, "limit"),
        ({"payment_hours": "48"}, "payment_hours"),
        ({"released_to": "lottery"}, "released_to"),
        ({"offer_hours": 0}, "offer_hours"),
    ],
)
def test_create_sale_bad_field_named(
    http: httpx.Client,
    manager: dict[str, str],
    changes: dict[str, Any],
    field: str,
) -> None:
    response = http.post("/api/staff/sales", json=sale_body(**changes), headers=manager)

    assert response.status_code == 400
    assert response.json()["field"] == field


def test_create_sale_shortest_payment_window(
    http: httpx.Client, manager: dict[str, str]
) -> None:
    body = sale_body(zones=["B-2", "north_1"], payment_hours=0.5)

    response = http.post("/api/staff/sales", json=body, headers=manager)

    assert response.status_code == 201
    assert response.json()["payment_hours"] == 0.5
    assert response.json()["zones"] == ["B-2", "north_1"]


def test_summary_counts_by_zone(
    http: httpx.Client, settings: Settings, manager: dict[str, str]
) -> None:
    setup = run(make_sale(settings, spaces=5, buyers=5))

    async def prepare() -> list[str]:
        async with stores(settings) as (pool, store):
            return await grab_spaces(pool, store, setup, 3)

    holds = run(prepare())
    sale = setup.sale.id
    paid = http.post(
        f"/api/staff/holds/{holds[0]}/payment",
        json={"amount_fen": 1_000_000, "method": "transfer", "receipt_no": "T-1"},
        headers=manager,
    )
    assert paid.status_code == 201
    cancelled = http.post(
        f"/api/staff/holds/{holds[1]}/cancel",
        json={"reason": "registered twice"},
        headers=manager,
    )
    assert cancelled.status_code == 200

    summary = http.get(f"/api/staff/sales/{sale}/summary", headers=manager).json()
    reconciled = http.get(f"/api/staff/sales/{sale}/reconcile", headers=manager)

    zone_a = summary["zones"][0]
    assert zone_a["zone"] == "A"
    assert zone_a["spaces"] == 5
    assert zone_a["free"] == 3
    assert zone_a["held"] == 1
    assert zone_a["paid"] == 1
    assert zone_a["signed"] == 0
    assert zone_a["cancelled"] == 1
    assert summary["total"]["collected_fen"] == 1_000_000
    assert summary["collected_yuan"] == 10_000
    assert reconciled.status_code == 200
    assert reconciled.json()["differences"] == []


def test_policy_update(http: httpx.Client, manager: dict[str, str]) -> None:
    sale = http.post("/api/staff/sales", json=sale_body(), headers=manager).json()
    path = f"/api/staff/sales/{sale['sale']}/settings"

    changed = http.post(
        path, json={"released_to": "waiting_list", "offer_hours": 12}, headers=manager
    )
    shown = http.get(f"/api/staff/sales/{sale['sale']}", headers=manager)
    unknown = http.post(f"/api/staff/sales/{10**12}/settings", json={}, headers=manager)

    assert changed.status_code == 200
    assert shown.json()["released_to"] == "waiting_list"
    assert shown.json()["offer_hours"] == 12
    assert unknown.status_code == 404
