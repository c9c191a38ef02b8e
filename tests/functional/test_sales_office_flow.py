"""A sale from import to export over HTTP: grab, payment with queue numbers,
contract, one cancellation and one expiry, then the results file."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

import httpx

from app import audit
from app.expiry import expire_overdue
from app.settings import Settings
from tests.office import add_member, login, make_overdue, stores
from tests.support import Buyer, registrant_csv, run, space_csv


def buyer_login(http: httpx.Client, sale: int, buyer: Buyer) -> dict[str, str]:
    response = http.post(
        f"/api/sales/{sale}/session",
        json={
            "registration_no": buyer.registration_no,
            "access_code": buyer.access_code,
        },
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_sale_from_import_to_export(http: httpx.Client, settings: Settings) -> None:
    manager = login(http, run(add_member(settings, "manager")))
    cashier = login(http, run(add_member(settings, "cashier")))

    # The manager sets up and arms the sale.
    opens = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    created = http.post(
        "/api/staff/sales",
        json={
            "name": "Flow sale",
            "zones": ["A"],
            "opens_at": opens.isoformat(),
            "closes_at": (opens + dt.timedelta(hours=1)).isoformat(),
        },
        headers=manager,
    )
    sale = created.json()["sale"]
    buyers = [Buyer(f"F{sale}-{i}", f"code{i:04d}", 1) for i in range(4)]
    for what, text in (
        ("spaces", space_csv(["A-1", "A-2", "A-3", "A-4"])),
        ("registrants", registrant_csv(buyers)),
    ):
        uploaded = http.post(
            f"/api/staff/sales/{sale}/{what}",
            files={"file": (f"{what}.csv", text.encode(), "text/csv")},
            headers=manager,
        )
        assert uploaded.status_code == 201, uploaded.text
    assert http.post(f"/api/staff/sales/{sale}/arm", headers=manager).status_code == 200

    # Four buyers each win one space.
    holds = []
    for index, buyer in enumerate(buyers):
        won = http.post(
            f"/api/sales/{sale}/holds",
            json={"space": f"A-{index + 1}"},
            headers={
                **buyer_login(http, sale, buyer),
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        assert won.status_code == 201, won.text
        holds.append(won.json()["hold"])

    # The cashier finds the first two buyers and takes their payments.
    for index, expected in ((1, "001"), (0, "002")):
        found = http.get(
            f"/api/staff/sales/{sale}/holds",
            params={"q": buyers[index].registration_no},
            headers=cashier,
        ).json()["holds"]
        assert [h["hold"] for h in found] == [holds[index]]
        paid = http.post(
            f"/api/staff/holds/{holds[index]}/payment",
            json={"amount_fen": 1_000_000, "method": "cash", "receipt_no": f"R{index}"},
            headers=cashier,
        )
        assert paid.json()["queue_no"] == expected
    signed = http.post(
        f"/api/staff/holds/{holds[1]}/contract",
        json={"contract_no": "C-1"},
        headers=cashier,
    )
    assert signed.status_code == 201

    # The manager cancels the third hold; the fourth is never paid.
    cancelled = http.post(
        f"/api/staff/holds/{holds[2]}/cancel",
        json={"reason": "buyer withdrew"},
        headers=manager,
    )
    assert cancelled.status_code == 200

    async def expire() -> list[str]:
        async with stores(settings) as (pool, store):
            await make_overdue(pool, [holds[3]])
            return [h.id for h in await expire_overdue(pool, store)]

    assert holds[3] in run(expire())

    exported = http.get(f"/api/staff/sales/{sale}/export.csv", headers=manager)
    rows = list(csv.DictReader(io.StringIO(exported.text.split("\n\n")[0])))
    by_space = {row["space"]: row for row in rows}
    assert [by_space[f"A-{i}"]["status"] for i in range(1, 5)] == [
        "paid",
        "signed",
        "cancelled",
        "expired",
    ]
    assert by_space["A-2"]["queue_no"] == "001"
    assert by_space["A-2"]["contract_no"] == "C-1"
    assert by_space["A-1"]["queue_no"] == "002"
    assert by_space["A-1"]["paid_yuan"] == "10000.00"
    assert by_space["A-3"]["end_reason"].endswith("buyer withdrew")

    summary = http.get(f"/api/staff/sales/{sale}/summary", headers=manager).json()
    assert summary["total"]["free"] == 2
    assert summary["total"]["collected_fen"] == 2_000_000

    async def verdict() -> audit.ChainVerdict:
        async with stores(settings, max_size=1) as (pool, _):
            return await audit.verify_chain(pool, sale)

    checked = run(verdict())
    assert checked.intact
    assert exported.text.rstrip().endswith(checked.final_hash)
