"""The waiting list: a released space goes to the first in line, not to a
stranger, and an offer that expires moves on to the next in line."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app import management, waiting_list
from app.cancellation import cancel_hold
from app.errors import Conflict
from app.expiry import expire_overdue
from app.keys import SaleKeys
from app.persister import Persister
from app.reconcile import reconcile
from app.redis_store import RedisStore
from app.settings import Settings
from app.types import DbPool
from tests.office import add_member, grab_spaces, login, make_overdue, stores
from tests.support import make_sale, run


async def agree(pool: DbPool, store: RedisStore, sale_id: int) -> None:
    """Assert Redis and Postgres agree, once the grant stream is drained."""
    await Persister(store.client, pool, claim_idle_ms=0).drain_sale(sale_id)
    report = await reconcile(pool, store.client, sale_id)
    assert report.differences == []


async def live_hold(pool: DbPool, sale_id: int, label: str) -> dict[str, object]:
    row = await pool.fetchrow(
        """
        SELECT h.id, h.status, r.registration_no,
               h.deadline - h.granted_at AS window
        FROM holds h
        JOIN spaces s ON s.id = h.space_id
        JOIN registrants r ON r.id = h.registrant_id
        WHERE s.sale_id = $1 AND s.label = $2
          AND h.status IN ('held', 'paid', 'signed')
        """,
        sale_id,
        label,
    )
    assert row is not None
    return dict(row)


def test_released_space_goes_in_line_order(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=6))
    sale_id = setup.sale.id
    manager = run(add_member(settings, "manager"))
    first, second, stranger = (b.registration_no for b in setup.buyers[3:6])

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 3)
            await management.update_policy(
                pool,
                manager,
                sale_id,
                management.SalePolicy("waiting_list", offer_hours=2),
            )
            await waiting_list.join(pool, sale_id, first, "A", None, "test")
            await waiting_list.join(pool, sale_id, second, None, "standard", "test")

            # The cancelled space is offered to the first in line.
            await cancel_hold(pool, store, holds[0], "paperwork missing", manager)
            offer = await live_hold(pool, sale_id, "A-001")
            assert offer["registration_no"] == first
            assert offer["status"] == "held"
            assert str(offer["window"]) == "2:00:00"
            taken = await store.grab(sale_id, stranger, uuid.uuid4().hex, ["A-001"])
            assert taken.outcome == "space_taken"
            await agree(pool, store, sale_id)

            # The first in line lets the offer expire: it moves to the second.
            await make_overdue(pool, [str(offer["id"])])
            expired = await expire_overdue(pool, store)
            # Overdue holds of other tests' sales may expire in the same run.
            assert offer["id"] in [h.id for h in expired]
            moved = await live_hold(pool, sale_id, "A-001")
            assert moved["registration_no"] == second
            entries = {
                e["registration_no"]: e
                for e in await waiting_list.list_entries(pool, sale_id)
            }
            assert entries[first]["status"] == "lapsed"
            assert entries[second]["status"] == "offered"
            assert entries[second]["hold"] == moved["id"]
            await agree(pool, store, sale_id)

            # With no one left in line, the space goes back to the market.
            await cancel_hold(pool, store, str(moved["id"]), "declined", manager)
            won = await store.grab(sale_id, stranger, uuid.uuid4().hex, ["A-001"])
            assert won.outcome == "granted"
            await agree(pool, store, sale_id)

    run(scenario())


def test_market_policy_releases_space(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=4))
    sale_id = setup.sale.id
    manager = run(add_member(settings, "manager"))

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            holds = await grab_spaces(pool, store, setup, 2)
            waiting = setup.buyers[2].registration_no
            await waiting_list.join(pool, sale_id, waiting, "A", None, "test")

            await cancel_hold(pool, store, holds[0], "wrong buyer", manager)

            holder = await store.client.hget(
                SaleKeys.for_sale(sale_id).holders, "A-001"
            )
            assert holder is None
            await agree(pool, store, sale_id)

    run(scenario())


def test_join_rejects_holder_and_repeat(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=3))
    sale_id = setup.sale.id

    async def scenario() -> None:
        async with stores(settings) as (pool, store):
            await grab_spaces(pool, store, setup, 1)
            holder = setup.buyers[0].registration_no
            other = setup.buyers[1].registration_no
            with pytest.raises(Conflict, match="already holds a space"):
                await waiting_list.join(pool, sale_id, holder, "A", None, "test")
            await waiting_list.join(pool, sale_id, other, "A", None, "test")
            with pytest.raises(Conflict, match="already on the waiting list"):
                await waiting_list.join(pool, sale_id, other, "B", None, "test")

    run(scenario())


def test_join_over_http(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=2))
    headers = login(http, run(add_member(settings, "cashier")))
    path = f"/api/staff/sales/{setup.sale.id}/waiting-list"
    number = setup.buyers[0].registration_no

    bad_zone = http.post(
        path, json={"registration_no": number, "zone": "Z"}, headers=headers
    )
    neither = http.post(path, json={"registration_no": number}, headers=headers)
    unknown = http.post(
        path, json={"registration_no": "NOBODY", "zone": "A"}, headers=headers
    )
    joined = http.post(
        path, json={"registration_no": number, "zone": "A"}, headers=headers
    )
    listed = http.get(path, headers=headers)

    assert bad_zone.status_code == 400
    assert bad_zone.json()["field"] == "zone"
    assert neither.status_code == 400
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "registration_no"
    assert joined.status_code == 201
    assert joined.json()["status"] == "waiting"
    assert [e["registration_no"] for e in listed.json()["entries"]] == [number]


def test_buyer_joins_and_sees_place(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=3))
    sale_id = setup.sale.id

    manager = run(add_member(settings, "manager"))

    async def prepare() -> None:
        async with stores(settings) as (pool, store):
            await grab_spaces(pool, store, setup, 1)

    async def use_waiting_list() -> None:
        async with stores(settings) as (pool, _):
            await management.update_policy(
                pool, manager, sale_id, management.SalePolicy("waiting_list", 24)
            )

    run(prepare())
    sessions = []
    for buyer in setup.buyers:
        response = http.post(
            f"/api/sales/{sale_id}/session",
            json={
                "registration_no": buyer.registration_no,
                "access_code": buyer.access_code,
            },
        )
        sessions.append({"Authorization": f"Bearer {response.json()['token']}"})
    path = f"/api/sales/{sale_id}/waiting-list"
    # Released spaces go to everyone until the manager switches the policy.
    market = http.post(path, json={"zone": "A"}, headers=sessions[1])
    run(use_waiting_list())

    holder = http.post(path, json={"zone": "A"}, headers=sessions[0])
    first = http.post(path, json={"zone": "A"}, headers=sessions[1])
    second = http.post(path, json={"kind": "standard"}, headers=sessions[2])
    mine = http.get(f"{path}/mine", headers=sessions[2])
    http.cookies.clear()
    no_session = http.post(path, json={"zone": "A"})

    assert holder.status_code == 409
    assert "already holds a space" in holder.json()["message"]
    assert market.status_code == 409
    assert "not through a waiting list" in market.json()["message"]
    assert first.status_code == 201
    assert first.json()["position"] == 1
    assert second.json()["position"] == 2
    assert mine.json()["entry"]["status"] == "waiting"
    assert mine.json()["entry"]["position"] == 2
    assert no_session.status_code == 401
