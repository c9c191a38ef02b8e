"""The staff API over real HTTP: role boundaries and every kind of bad input.

Each refusal is checked for its status, its code, a message that names the
problem, and that nothing changed: the hold row and the audit log are the
same before and after.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.office import add_member, grab_spaces, hold_row, login, make_overdue, stores
from tests.support import SaleSetup, make_sale, run

PRICE_FEN = 1_000_000


@dataclasses.dataclass
class Office:
    setup: SaleSetup
    holds: list[str]
    cashier: dict[str, str]
    manager: dict[str, str]
    buyer: dict[str, str]


@pytest.fixture
def office(http: httpx.Client, settings: Settings) -> Office:
    setup = run(make_sale(settings, spaces=6, buyers=6))

    async def prepare() -> list[str]:
        async with stores(settings) as (pool, store):
            return await grab_spaces(pool, store, setup, 5)

    holds = run(prepare())
    buyer = setup.buyers[5]
    session = http.post(
        f"/api/sales/{setup.sale.id}/session",
        json={
            "registration_no": buyer.registration_no,
            "access_code": buyer.access_code,
        },
    )
    assert session.status_code == 201
    return Office(
        setup,
        holds,
        login(http, run(add_member(settings, "cashier"))),
        login(http, run(add_member(settings, "manager"))),
        {"Authorization": f"Bearer {session.json()['token']}"},
    )


def snapshot(settings: Settings, sale_id: int, hold_id: str) -> dict[str, Any]:
    """Return what a refused request must leave untouched."""

    async def read() -> dict[str, Any]:
        async with stores(settings, max_size=1) as (pool, _):
            return {
                "hold": await hold_row(pool, hold_id),
                "sale": dict(
                    await pool.fetchrow("SELECT * FROM sales WHERE id = $1", sale_id)
                    or {}
                ),
                "spaces": await pool.fetchval(
                    "SELECT count(*) FROM spaces WHERE sale_id = $1", sale_id
                ),
                "audit": await pool.fetchval(
                    "SELECT count(*) FROM audit_log WHERE sale_id = $1", sale_id
                ),
            }

    return run(read())


def pay(
    http: httpx.Client, headers: dict[str, str], hold: str, **changes: Any
) -> httpx.Response:
    body = {"amount_fen": PRICE_FEN, "method": "cash", "receipt_no": f"R-{hold}"}
    body.update(changes)
    return http.post(f"/api/staff/holds/{hold}/payment", json=body, headers=headers)


def manager_actions(office: Office) -> list[tuple[str, str, dict[str, Any]]]:
    sale = office.setup.sale.id
    csv_upload = {"files": {"file": ("spaces.csv", b"label,zone,level,kind\n")}}
    return [
        (
            "POST",
            f"/api/staff/holds/{office.holds[0]}/cancel",
            {"json": {"reason": "x"}},
        ),
        ("POST", "/api/staff/sales", {"json": {"name": "x"}}),
        ("POST", f"/api/staff/sales/{sale}/settings", {"json": {}}),
        ("POST", f"/api/staff/sales/{sale}/spaces", csv_upload),
        ("POST", f"/api/staff/sales/{sale}/registrants", csv_upload),
        ("POST", f"/api/staff/sales/{sale}/arm", {}),
        ("POST", f"/api/staff/sales/{sale}/pause", {}),
        ("POST", f"/api/staff/sales/{sale}/resume", {}),
        ("POST", f"/api/staff/sales/{sale}/close", {}),
    ]


def test_cashier_forbidden_manager_actions(
    http: httpx.Client, settings: Settings, office: Office
) -> None:
    before = snapshot(settings, office.setup.sale.id, office.holds[0])

    for method, path, extra in manager_actions(office):
        response = http.request(method, path, headers=office.cashier, **extra)
        assert response.status_code == 403, path
        assert response.json()["error"] == "forbidden", path
        assert "Only a manager can" in response.json()["message"], path

    assert snapshot(settings, office.setup.sale.id, office.holds[0]) == before


def test_cashier_cannot_override_amount(
    http: httpx.Client, settings: Settings, office: Office
) -> None:
    before = snapshot(settings, office.setup.sale.id, office.holds[0])

    response = pay(
        http, office.cashier, office.holds[0], amount_fen=900_000, override_reason="x"
    )

    assert response.status_code == 403
    assert "Only a manager can accept an amount" in response.json()["message"]
    assert snapshot(settings, office.setup.sale.id, office.holds[0]) == before


def staff_routes(office: Office) -> list[tuple[str, str]]:
    sale = office.setup.sale.id
    hold = office.holds[0]
    return [
        ("GET", "/api/staff/me"),
        ("DELETE", "/api/staff/session"),
        ("GET", f"/api/staff/sales/{sale}/holds"),
        ("GET", f"/api/staff/holds/{hold}"),
        ("POST", f"/api/staff/holds/{hold}/payment"),
        ("POST", f"/api/staff/holds/{hold}/contract"),
        ("POST", f"/api/staff/holds/{hold}/cancel"),
        ("GET", f"/api/staff/sales/{sale}/waiting-list"),
        ("POST", f"/api/staff/sales/{sale}/waiting-list"),
        ("POST", "/api/staff/sales"),
        ("GET", f"/api/staff/sales/{sale}"),
        ("POST", f"/api/staff/sales/{sale}/settings"),
        ("POST", f"/api/staff/sales/{sale}/spaces"),
        ("POST", f"/api/staff/sales/{sale}/registrants"),
        ("POST", f"/api/staff/sales/{sale}/arm"),
        ("POST", f"/api/staff/sales/{sale}/pause"),
        ("POST", f"/api/staff/sales/{sale}/resume"),
        ("POST", f"/api/staff/sales/{sale}/close"),
        ("GET", f"/api/staff/sales/{sale}/summary"),
        ("GET", f"/api/staff/sales/{sale}/export.csv"),
        ("GET", f"/api/staff/sales/{sale}/audit.csv"),
        ("GET", f"/api/staff/sales/{sale}/reconcile"),
    ]


def test_buyer_session_gets_nothing(
    http: httpx.Client, settings: Settings, office: Office
) -> None:
    before = snapshot(settings, office.setup.sale.id, office.holds[0])

    for method, path in staff_routes(office):
        response = http.request(method, path, headers=office.buyer, json={})
        assert response.status_code == 401, path
        assert "not a valid staff session" in response.json()["message"], path

    assert snapshot(settings, office.setup.sale.id, office.holds[0]) == before


def test_no_session_gets_nothing(http: httpx.Client, office: Office) -> None:
    http.cookies.clear()
    for method, path in staff_routes(office):
        response = http.request(method, path, json={})
        assert response.status_code == 401, path
        assert response.json()["error"] == "unauthorized", path


def test_payment_unknown_hold(http: httpx.Client, office: Office) -> None:
    response = pay(http, office.cashier, f"{office.setup.sale.id}-999999")

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_hold"
    assert "does not exist" in response.json()["message"]


def test_payment_malformed_hold_id(http: httpx.Client, office: Office) -> None:
    response = pay(http, office.cashier, "not-a-hold")

    assert response.status_code == 400
    assert response.json()["field"] == "hold"


def test_payment_wrong_amount(
    http: httpx.Client, settings: Settings, office: Office
) -> None:
    before = snapshot(settings, office.setup.sale.id, office.holds[0])

    response = pay(http, office.cashier, office.holds[0], amount_fen=999_999)

    assert response.status_code == 422
    assert response.json()["error"] == "amount_mismatch"
    assert response.json()["amount_due_fen"] == PRICE_FEN
    assert "1000000 fen" in response.json()["message"]
    assert snapshot(settings, office.setup.sale.id, office.holds[0]) == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"method": "cheque"}, "method"),
        ({"amount_fen": "1000000"}, "amount_fen"),
        ({"amount_fen": -5}, "amount_fen"),
        ({"receipt_no": ""}, "receipt_no"),
        ({"receipt_no": None}, "receipt_no"),
        ({"receipt_no": "R-\u0000"}, "receipt_no"),
        ({"override_reason": "late\u0007"}, "override_reason"),
    ],
)
def test_payment_bad_field_named(
    http: httpx.Client,
    settings: Settings,
    office: Office,
    changes: dict[str, Any],
    field: str,
) -> None:
    before = snapshot(settings, office.setup.sale.id, office.holds[0])

    response = pay(http, office.cashier, office.holds[0], **changes)

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert field in response.json()["message"]
    assert snapshot(settings, office.setup.sale.id, office.holds[0]) == before


def test_paying_overdue_hold_refused(
    http: httpx.Client, settings: Settings, office: Office
) -> None:
    async def overdue() -> None:
        async with stores(settings, max_size=1) as (pool, _):
            await make_overdue(pool, [office.holds[1]])

    run(overdue())
    before = snapshot(settings, office.setup.sale.id, office.holds[1])

    response = pay(http, office.cashier, office.holds[1])

    assert response.status_code == 409
    assert response.json()["error"] == "hold_expired"
    assert "deadline" in response.json()["message"]
    assert snapshot(settings, office.setup.sale.id, office.holds[1]) == before


def test_payment_issues_number_and_repeats(http: httpx.Client, office: Office) -> None:
    first = pay(http, office.cashier, office.holds[0])
    again = pay(http, office.manager, office.holds[0])
    other_receipt = pay(http, office.cashier, office.holds[0], receipt_no="R-other")
    second = pay(http, office.cashier, office.holds[1])

    assert first.status_code == 201
    assert first.json()["queue_no"] == "001"
    assert first.json()["status"] == "paid"
    assert again.status_code == 200
    assert again.json()["queue_no"] == "001"
    assert again.json()["repeated"] is True
    assert other_receipt.status_code == 409
    assert other_receipt.json()["error"] == "already_paid"
    assert second.json()["queue_no"] == "002"


def test_duplicate_receipt_refused(http: httpx.Client, office: Office) -> None:
    assert (
        pay(http, office.cashier, office.holds[0], receipt_no="R-1").status_code == 201
    )

    response = pay(http, office.cashier, office.holds[1], receipt_no="R-1")

    assert response.status_code == 409
    assert response.json()["error"] == "duplicate_number"
    assert response.json()["field"] == "receipt_no"
    # The refused payment returned its queue number: the next one is 002.
    assert pay(http, office.cashier, office.holds[1]).json()["queue_no"] == "002"


def test_manager_overrides_amount(http: httpx.Client, office: Office) -> None:
    without_reason = pay(http, office.manager, office.holds[0], amount_fen=900_000)
    with_reason = pay(
        http,
        office.manager,
        office.holds[0],
        amount_fen=900_000,
        override_reason="discount approved by the developer",
    )

    assert without_reason.status_code == 422
    assert with_reason.status_code == 201
    assert with_reason.json()["paid_fen"] == 900_000


@pytest.mark.parametrize("amount", [2**63, 10**12 + 1])
def test_override_huge_amount_rejected(
    http: httpx.Client, settings: Settings, office: Office, amount: int
) -> None:
    before = snapshot(settings, office.setup.sale.id, office.holds[0])

    response = pay(
        http, office.manager, office.holds[0], amount_fen=amount, override_reason="x"
    )

    assert response.status_code == 400
    assert response.json()["field"] == "amount_fen"
    assert "at most 1000000000000" in response.json()["message"]
    assert snapshot(settings, office.setup.sale.id, office.holds[0]) == before


def test_signing_unpaid_refused(
    http: httpx.Client, settings: Settings, office: Office
) -> None:
    before = snapshot(settings, office.setup.sale.id, office.holds[0])

    response = http.post(
        f"/api/staff/holds/{office.holds[0]}/contract",
        json={"contract_no": "C-1"},
        headers=office.cashier,
    )

    assert response.status_code == 409
    assert response.json()["error"] == "hold_not_paid"
    assert "confirm the payment" in response.json()["message"]
    assert snapshot(settings, office.setup.sale.id, office.holds[0]) == before


def test_contract_after_payment(http: httpx.Client, office: Office) -> None:
    hold = office.holds[0]
    assert pay(http, office.cashier, hold).status_code == 201
    path = f"/api/staff/holds/{hold}/contract"

    signed = http.post(path, json={"contract_no": "C-1"}, headers=office.cashier)
    again = http.post(path, json={"contract_no": "C-1"}, headers=office.cashier)
    other = http.post(path, json={"contract_no": "C-2"}, headers=office.cashier)
    missing = http.post(path, json={}, headers=office.cashier)

    assert signed.status_code == 201
    assert signed.json()["status"] == "signed"
    assert again.status_code == 200
    assert other.status_code == 409
    assert other.json()["error"] == "already_signed"
    assert missing.status_code == 400
    assert missing.json()["field"] == "contract_no"


def test_cancelling_signed_refused(
    http: httpx.Client, settings: Settings, office: Office
) -> None:
    hold = office.holds[0]
    assert pay(http, office.cashier, hold).status_code == 201
    contract = http.post(
        f"/api/staff/holds/{hold}/contract",
        json={"contract_no": "C-9"},
        headers=office.cashier,
    )
    assert contract.status_code == 201
    before = snapshot(settings, office.setup.sale.id, hold)

    response = http.post(
        f"/api/staff/holds/{hold}/cancel",
        json={"reason": "buyer changed their mind", "expected_status": "paid"},
        headers=office.manager,
    )

    assert response.status_code == 409
    assert response.json()["error"] == "hold_signed"
    assert "cannot be cancelled" in response.json()["message"]
    assert snapshot(settings, office.setup.sale.id, hold) == before


def test_cancel_needs_reason(
    http: httpx.Client, settings: Settings, office: Office
) -> None:
    before = snapshot(settings, office.setup.sale.id, office.holds[0])

    response = http.post(
        f"/api/staff/holds/{office.holds[0]}/cancel",
        json={"reason": "  "},
        headers=office.manager,
    )

    assert response.status_code == 400
    assert response.json()["field"] == "reason"
    assert snapshot(settings, office.setup.sale.id, office.holds[0]) == before


def test_cancel_paid_needs_expected_status(http: httpx.Client, office: Office) -> None:
    hold = office.holds[0]
    assert pay(http, office.cashier, hold).status_code == 201
    path = f"/api/staff/holds/{hold}/cancel"

    refused = http.post(path, json={"reason": "refund"}, headers=office.manager)
    done = http.post(
        path,
        json={"reason": "refund", "expected_status": "paid"},
        headers=office.manager,
    )
    again = http.post(path, json={"reason": "refund"}, headers=office.manager)
    paid_after = pay(http, office.cashier, hold)

    assert refused.status_code == 409
    assert refused.json()["error"] == "hold_changed"
    assert "queue number 001" in refused.json()["message"]
    assert done.status_code == 200
    assert done.json()["status"] == "cancelled"
    assert done.json()["queue_no"] == "001"
    assert again.status_code == 409
    assert again.json()["error"] == "hold_cancelled"
    assert paid_after.status_code == 409
    assert paid_after.json()["error"] == "hold_cancelled"


def test_search_by_each_key(http: httpx.Client, office: Office) -> None:
    sale = office.setup.sale.id
    buyer = office.setup.buyers[2].registration_no
    path = f"/api/staff/sales/{sale}/holds"

    by_label = http.get(path, params={"q": "A-003"}, headers=office.cashier).json()
    by_number = http.get(path, params={"q": buyer}, headers=office.cashier).json()
    by_name = http.get(
        path, params={"q": f"buyer {buyer.lower()}"}, headers=office.cashier
    ).json()
    # registrant_csv gives buyer i the phone 1380000000i.
    by_phone = http.get(path, params={"q": "0002"}, headers=office.cashier).json()
    by_status = http.get(path, params={"status": "held"}, headers=office.cashier)
    bad_status = http.get(path, params={"status": "gone"}, headers=office.cashier)
    bad_page = http.get(path, params={"page": "0"}, headers=office.cashier)

    for result in (by_label, by_number, by_name, by_phone):
        assert [h["hold"] for h in result["holds"]] == [office.holds[2]]
    assert by_status.json()["total"] == 5
    assert bad_status.status_code == 400
    assert bad_status.json()["field"] == "status"
    assert bad_page.status_code == 400
    assert bad_page.json()["field"] == "page"


@pytest.mark.parametrize("page", ["\u00b2", "\u0661", "1.5", "-1"])
def test_search_rejects_non_ascii_page(
    http: httpx.Client, office: Office, page: str
) -> None:
    path = f"/api/staff/sales/{office.setup.sale.id}/holds"

    response = http.get(path, params={"page": page}, headers=office.cashier)

    assert response.status_code == 400
    assert response.json()["field"] == "page"
    assert repr(page) in response.json()["message"]


def test_control_characters_rejected(
    http: httpx.Client, settings: Settings, office: Office
) -> None:
    sale = office.setup.sale.id
    hold = office.holds[0]
    search = f"/api/staff/sales/{sale}/holds"
    before = snapshot(settings, sale, hold)
    requests: list[tuple[str, str, dict[str, Any], str]] = [
        ("GET", search, {"params": {"q": "A-\u0000"}}, "q"),
        ("GET", search, {"params": {"zone": "A\u0000"}}, "zone"),
        (
            "POST",
            f"/api/staff/holds/{hold}/contract",
            {"json": {"contract_no": "C-\u0000"}},
            "contract_no",
        ),
        (
            "POST",
            f"/api/staff/holds/{hold}/cancel",
            {"json": {"reason": "wrong\u0000buyer"}},
            "reason",
        ),
        (
            "POST",
            f"/api/staff/sales/{sale}/waiting-list",
            {"json": {"registration_no": "R\u0000", "zone": "A"}},
            "registration_no",
        ),
        (
            "POST",
            "/api/staff/session",
            {"json": {"username": "admin\u0000", "password": "x"}},
            "username",
        ),
    ]

    for method, path, extra, field in requests:
        response = http.request(method, path, headers=office.manager, **extra)
        assert response.status_code == 400, field
        assert response.json()["field"] == field
        assert "control characters" in response.json()["message"], field

    assert snapshot(settings, sale, hold) == before


def test_search_by_signed_reference(
    http: httpx.Client, office: Office, settings: Settings
) -> None:
    from app.hold_refs import HoldRefs

    assert settings.secret_key
    refs = HoldRefs(settings.secret_key)
    path = f"/api/staff/sales/{office.setup.sale.id}/holds"
    reference = refs.sign(office.holds[3])
    forged = HoldRefs("another-key").sign(office.holds[3])

    found = http.get(path, params={"q": reference + "\n"}, headers=office.cashier)
    not_found = http.get(path, params={"q": forged}, headers=office.cashier)

    assert [h["hold"] for h in found.json()["holds"]] == [office.holds[3]]
    assert not_found.status_code == 200
    assert not_found.json()["holds"] == []


def test_hold_detail_with_history(http: httpx.Client, office: Office) -> None:
    hold = office.holds[0]
    assert pay(http, office.cashier, hold).status_code == 201

    detail = http.get(f"/api/staff/holds/{hold}", headers=office.cashier)
    unknown = http.get("/api/staff/holds/1-999999", headers=office.cashier)

    assert detail.status_code == 200
    body = detail.json()
    assert body["registration_no"] == office.setup.buyers[0].registration_no
    assert body["space"] == "A-001"
    assert [e["action"] for e in body["history"]] == [
        "hold_granted",
        "payment_confirmed",
    ]
    assert body["history"][1]["after"]["queue_no"] == 1
    assert unknown.status_code == 404


def test_unknown_sale_not_found(http: httpx.Client, office: Office) -> None:
    for path in (
        "/api/staff/sales/999999999/holds",
        "/api/staff/sales/999999999/waiting-list",
        "/api/staff/sales/999999999/summary",
        "/api/staff/sales/999999999/export.csv",
    ):
        response = http.get(path, headers=office.cashier)
        assert response.status_code == 404, path
        assert response.json()["error"] == "unknown_sale", path
