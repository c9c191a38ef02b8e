"""The buyer API over real HTTP: status codes, validation, privacy."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from app.settings import Settings
from tests.support import SaleSetup, make_sale, run


def login(http: httpx.Client, setup: SaleSetup, index: int = 0) -> dict[str, str]:
    buyer = setup.buyers[index]
    response = http.post(
        f"/api/sales/{setup.sale.id}/session",
        json={
            "registration_no": buyer.registration_no,
            "access_code": buyer.access_code,
        },
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def grab(
    http: httpx.Client,
    setup: SaleSetup,
    headers: dict[str, str],
    body: object,
    key: str | None = None,
) -> httpx.Response:
    return http.post(
        f"/api/sales/{setup.sale.id}/holds",
        json=body,
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


def test_grab_wins_then_taken(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=2))
    first = login(http, setup, 0)
    second = login(http, setup, 1)

    won = grab(http, setup, first, {"space": "A-001"})
    lost = grab(http, setup, second, {"space": "A-001"})

    assert won.status_code == 201
    assert won.json()["space"] == "A-001"
    assert won.json()["status"] == "held"
    assert lost.status_code == 409
    assert lost.json()["error"] == "space_taken"


def test_grab_repeat_of_loss_marked_replayed(
    http: httpx.Client, settings: Settings
) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=2))
    grab(http, setup, login(http, setup, 0), {"space": "A-001"})
    second = login(http, setup, 1)

    first = grab(http, setup, second, {"space": "A-001"}, key="again")
    repeat = grab(http, setup, second, {"space": "A-001"}, key="again")

    assert first.status_code == repeat.status_code == 409
    assert "idempotent-replayed" not in first.headers
    assert repeat.headers["idempotent-replayed"] == "true"


def test_grab_repeat_returns_first_answer(
    http: httpx.Client, settings: Settings
) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=1))
    headers = login(http, setup)

    first = grab(http, setup, headers, {"space": "A-001"}, key="same")
    again = grab(http, setup, headers, {"space": "A-001"}, key="same")

    assert first.status_code == 201
    assert again.status_code == 201
    assert again.json()["hold"] == first.json()["hold"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(http.get(mine_url(setup), headers=headers).json()["holds"]) == 1


def mine_url(setup: SaleSetup) -> str:
    return f"/api/sales/{setup.sale.id}/holds/mine"


def test_grab_ranked_list(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=4, buyers=2))
    grab(http, setup, login(http, setup, 0), {"space": "A-002"})

    won = grab(
        http, setup, login(http, setup, 1), {"spaces": ["A-002", "A-004", "A-001"]}
    )

    assert won.status_code == 201
    assert won.json()["space"] == "A-004"
    assert won.json()["amount_fen"] == 1_000_000


def test_grab_limit_reached(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=4, buyers=1, limits={0: 2}))
    headers = login(http, setup)
    assert grab(http, setup, headers, {"space": "A-001"}).status_code == 201
    assert grab(http, setup, headers, {"space": "A-002"}).status_code == 201

    third = grab(http, setup, headers, {"space": "A-003"})

    assert third.status_code == 409
    assert third.json()["error"] == "limit_reached"
    assert third.json()["limit"] == 2


def test_grab_unknown_space(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings))

    response = grab(http, setup, login(http, setup), {"space": "Z-999"})

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_space"
    assert "Z-999" in response.json()["message"]


def test_grab_before_opening(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, opens_in=3600))

    response = grab(http, setup, login(http, setup), {"space": "A-001"})

    assert response.status_code == 403
    assert response.json()["error"] == "sale_not_open"
    assert "opens_at" in response.json()


def test_grab_after_closing(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, opens_in=-120, duration=60))

    response = grab(http, setup, login(http, setup), {"space": "A-001"})

    assert response.status_code == 410
    assert response.json()["error"] == "sale_closed"


def test_grab_not_registered(http: httpx.Client, settings: Settings) -> None:
    from app import arming, database, imports
    from tests.support import registrant_csv

    setup = run(make_sale(settings, buyers=2, arm=False))
    headers = login(http, setup, 0)

    async def drop_first_buyer_and_arm() -> None:
        import redis.asyncio as aioredis

        assert settings.database_url and settings.redis_url
        pool = await database.create_pool(settings.database_url)
        client = aioredis.Redis.from_url(settings.redis_url)
        async with pool.acquire() as connection:
            await imports.import_registrants(
                connection, setup.sale, registrant_csv(setup.buyers[1:]), 64
            )
        await arming.arm_sale(pool, client, setup.sale.id)
        await client.aclose()
        await pool.close()

    run(drop_first_buyer_and_arm())
    response = grab(http, setup, headers, {"space": "A-001"})

    assert response.status_code == 403
    assert response.json()["error"] == "not_registered"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b"", None),
        (b'{"space": 5}', "spaces"),
        (b'{"space": "A-001", "spaces": ["A-002"]}', None),
        (b'{"spaces": []}', "spaces"),
        (b'{"spaces": "A-001"}', "spaces"),
        (b'{"spaces": ["A-1", "A-2", "A-3", "A-4", "A-5", "A-6"]}', "spaces"),
        (b'{"spaces": ["A-001", "A-001"]}', "spaces"),
        (b'{"space": "A 001; DROP"}', "spaces"),
        (b'{"other": 1}', None),
    ],
)
def test_grab_bad_body(
    http: httpx.Client, settings: Settings, body: bytes, field: str | None
) -> None:
    setup = shared_sale(settings)
    headers = login(http, setup)

    response = http.post(
        f"/api/sales/{setup.sale.id}/holds",
        content=body,
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"
    assert response.json().get("field") == field
    assert "Traceback" not in response.text
    assert http.get(mine_url(setup), headers=headers).json()["holds"] == []


_shared: dict[str, SaleSetup] = {}


def shared_sale(settings: Settings) -> SaleSetup:
    """One sale for tests that never change it."""
    if "sale" not in _shared:
        _shared["sale"] = run(make_sale(settings, spaces=5, buyers=3))
    return _shared["sale"]


def test_grab_huge_body(http: httpx.Client, settings: Settings) -> None:
    setup = shared_sale(settings)
    headers = login(http, setup)
    body = b'{"space": "A-001", "pad": "' + b"x" * 100_000 + b'"}'

    response = http.post(
        f"/api/sales/{setup.sale.id}/holds",
        content=body,
        headers={**headers, "Idempotency-Key": "huge"},
    )

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


@pytest.mark.parametrize("key", [None, "", "has space", "x" * 101, "ключ"])
def test_grab_bad_idempotency_key(
    http: httpx.Client, settings: Settings, key: str | None
) -> None:
    setup = shared_sale(settings)
    headers = login(http, setup)
    if key is not None:
        headers["Idempotency-Key"] = key

    response = http.post(
        f"/api/sales/{setup.sale.id}/holds",
        content=b'{"space": "A-001"}',
        headers={k: v.encode() for k, v in headers.items()},  # type: ignore[misc]
    )

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["message"]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer forged.token.value", "Bearer x", "Basic abc"],
)
def test_grab_without_valid_session(
    http: httpx.Client, settings: Settings, authorization: str | None
) -> None:
    setup = shared_sale(settings)
    headers = {"Idempotency-Key": "x1"}
    if authorization is not None:
        headers["Authorization"] = authorization

    response = http.post(
        f"/api/sales/{setup.sale.id}/holds", json={"space": "A-001"}, headers=headers
    )

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_session_of_other_sale_rejected(http: httpx.Client, settings: Settings) -> None:
    first = shared_sale(settings)
    other = run(make_sale(settings, spaces=1, buyers=1))
    headers = login(http, first)

    response = grab(http, other, headers, {"space": "A-001"})

    assert response.status_code == 401
    assert f"sale {other.sale.id}" in response.json()["message"]


def test_session_token_signed_with_other_key(
    http: httpx.Client, settings: Settings
) -> None:
    from app.sessions import BuyerSession, BuyerSessions

    setup = shared_sale(settings)
    forged = BuyerSessions("not-the-server-key", 3600).issue(
        BuyerSession(setup.sale.id, setup.buyers[0].registration_no)
    )

    response = http.get(mine_url(setup), headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401


def test_session_cookie_works(http: httpx.Client, settings: Settings) -> None:
    setup = shared_sale(settings)
    buyer = setup.buyers[2]
    with httpx.Client(base_url=str(http.base_url)) as browser:
        browser.post(
            f"/api/sales/{setup.sale.id}/session",
            json={
                "registration_no": buyer.registration_no,
                "access_code": buyer.access_code,
            },
        )

        response = browser.get(mine_url(setup))

    assert response.status_code == 200
    assert response.json()["registration_no"] == buyer.registration_no


def test_login_wrong_code(http: httpx.Client, settings: Settings) -> None:
    setup = shared_sale(settings)

    response = http.post(
        f"/api/sales/{setup.sale.id}/session",
        json={"registration_no": setup.buyers[0].registration_no, "access_code": "no"},
    )

    assert response.status_code == 401
    assert "token" not in response.json()
    assert "set-cookie" not in response.headers


def test_login_unknown_registrant(http: httpx.Client, settings: Settings) -> None:
    setup = shared_sale(settings)

    response = http.post(
        f"/api/sales/{setup.sale.id}/session",
        json={"registration_no": "NOBODY", "access_code": "code0000"},
    )

    assert response.status_code == 401


def test_login_attempts_limited(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    buyer = setup.buyers[0]
    url = f"/api/sales/{setup.sale.id}/session"
    for _ in range(5):
        wrong = {"registration_no": buyer.registration_no, "access_code": "wrong"}
        assert http.post(url, json=wrong).status_code == 401

    right = {"registration_no": buyer.registration_no, "access_code": buyer.access_code}
    response = http.post(url, json=right)

    assert response.status_code == 429


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"registration_no": 5, "access_code": "x"},
        {"registration_no": "a"},
        {"registration_no": "R\u0000", "access_code": "code0000"},
    ],
)
def test_login_bad_body(http: httpx.Client, settings: Settings, body: object) -> None:
    setup = shared_sale(settings)

    response = http.post(f"/api/sales/{setup.sale.id}/session", json=body)

    assert response.status_code == 400
    assert response.json()["field"] in {"registration_no", "access_code"}


def test_my_holds_only_mine(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=2))
    first = login(http, setup, 0)
    second = login(http, setup, 1)
    grab(http, setup, first, {"space": "A-001"})
    grab(http, setup, second, {"space": "A-002"})

    mine = http.get(mine_url(setup), headers=first).json()
    theirs = http.get(mine_url(setup), headers=second).json()

    assert [h["space"] for h in mine["holds"]] == ["A-001"]
    assert [h["space"] for h in theirs["holds"]] == ["A-002"]
    assert mine["holds"][0]["status"] == "held"
    assert mine["holds"][0]["amount_yuan"] == 10000


def test_sale_info(http: httpx.Client, settings: Settings) -> None:
    setup = shared_sale(settings)

    info = http.get(f"/api/sales/{setup.sale.id}").json()

    assert info["state"] == "open"
    assert info["limit"] == 1
    assert info["zones"] == [
        {
            "zone": "A",
            "levels": ["B1"],
            "spaces": 5,
            "min_fen": 1_000_000,
            "max_fen": 1_000_000,
        }
    ]
    assert isinstance(info["server_time_ms"], int)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("999999", 404),
        ("abc", 400),
        # Superscript two and Arabic-Indic one: digits to str.isdigit(), not ids.
        ("%C2%B2", 400),
        ("%D9%A1", 400),
        ("1234567890123456789", 400),
    ],
)
def test_sale_info_unknown(http: httpx.Client, path: str, status: int) -> None:
    response = http.get(f"/api/sales/{path}")

    assert response.status_code == status
    assert set(response.json()) >= {"error", "message"}


def test_spaces_listing(http: httpx.Client, settings: Settings) -> None:
    setup = shared_sale(settings)

    spaces = http.get(f"/api/sales/{setup.sale.id}/spaces").json()["spaces"]

    assert [s["label"] for s in spaces] == setup.labels
    assert [s["position"] for s in spaces] == list(range(5))
    assert spaces[0]["price_yuan"] == 10000


def test_availability_etag_and_304(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=10, buyers=1))
    url = f"/api/sales/{setup.sale.id}/availability"
    before = http.get(url)
    unchanged = http.get(url, headers={"If-None-Match": before.headers["etag"]})

    grab(http, setup, login(http, setup), {"space": "A-002"})
    after = http.get(url, headers={"If-None-Match": before.headers["etag"]})

    assert before.status_code == 200
    assert before.json()["free"] == 10
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]
    assert after.json()["free"] == 9
    assert after.json()["bitmap"] == base64.b64encode(bytes([0b0100_0000, 0])).decode()


def test_unknown_route_is_json(http: httpx.Client) -> None:
    response = http.get("/api/nothing-here")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_wrong_method_is_json(http: httpx.Client, settings: Settings) -> None:
    setup = shared_sale(settings)

    response = http.delete(f"/api/sales/{setup.sale.id}/holds")

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_stranger_cannot_lock_buyer_out(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    buyer = setup.buyers[0]
    url = f"/api/sales/{setup.sale.id}/session"
    wrong = {"registration_no": buyer.registration_no, "access_code": "wrong"}
    right = {"registration_no": buyer.registration_no, "access_code": buyer.access_code}
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=str(http.base_url), transport=elsewhere) as stranger:
        tries = [stranger.post(url, json=wrong).status_code for _ in range(6)]

    response = http.post(url, json=right)

    assert tries == [401] * 5 + [429]
    assert response.status_code == 201


def test_login_success_resets_failures(http: httpx.Client, settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=1))
    buyer = setup.buyers[0]
    url = f"/api/sales/{setup.sale.id}/session"
    wrong = {"registration_no": buyer.registration_no, "access_code": "wrong"}
    right = {"registration_no": buyer.registration_no, "access_code": buyer.access_code}

    statuses = []
    for _ in range(2):
        statuses += [http.post(url, json=wrong).status_code for _ in range(4)]
        statuses.append(http.post(url, json=right).status_code)

    assert statuses == [401] * 4 + [201] + [401] * 4 + [201]
