"""Buyer API under /api/sales/{sale}: log in, look, grab, see my holds."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import time
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import errors, passwords
from app.catalog import SaleView
from app.database import DB_ERRORS
from app.grab_input import check_idempotency_key, requested_labels
from app.holds import buyer_holds
from app.inputs import path_int, read_body, read_json_object, text_field
from app.keys import SaleKeys
from app.redis_store import Snapshot
from app.services import Services, services
from app.sessions import BUYER_COOKIE, BuyerSession, set_session_cookie

logger = logging.getLogger(__name__)

# Wrong access codes allowed per registration number from one address, and
# per address over all registration numbers, within the window. Counting per
# number and address means a stranger cannot lock a buyer out.
MAX_LOGIN_FAILURES = 5
MAX_ADDRESS_FAILURES = 50
LOGIN_FAILURE_WINDOW_SECONDS = 900


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status, headers, media_type="application/json")


async def _view(svc: Services, sale_id: int) -> SaleView:
    try:
        return await svc.catalog.view(sale_id)
    except DB_ERRORS as exc:
        cached = svc.catalog.cached(sale_id)
        if cached is not None:
            return cached
        logger.error("sale_unreadable", extra={"sale_id": sale_id, "error": repr(exc)})
        raise errors.ServiceUnavailable(
            "The sale cannot be read right now; try again in a few seconds."
        ) from None


def _phase(view: SaleView, now: dt.datetime) -> str:
    sale = view.sale
    if sale.state == "closed" or now >= sale.closes_at:
        return "closed"
    if sale.state == "draft":
        return "preparing"
    if sale.state == "paused":
        return "paused"
    return "open" if now >= sale.opens_at else "scheduled"


async def sale_info(request: Request) -> Response:
    svc = services(request)
    view = await _view(svc, path_int(request, "sale"))
    sale = view.sale
    zones: dict[str, dict[str, Any]] = {}
    for space in view.spaces:
        zone = zones.setdefault(
            space.zone,
            {
                "zone": space.zone,
                "levels": [],
                "spaces": 0,
                "min_fen": None,
                "max_fen": 0,
            },
        )
        if space.level not in zone["levels"]:
            zone["levels"].append(space.level)
        zone["spaces"] += 1
        zone["min_fen"] = min(zone["min_fen"] or space.price_fen, space.price_fen)
        zone["max_fen"] = max(zone["max_fen"], space.price_fen)
    now = dt.datetime.now(dt.UTC)
    return json_response(
        {
            "sale": sale.id,
            "name": sale.name,
            "opens_at": sale.opens_at.isoformat(),
            "closes_at": sale.closes_at.isoformat(),
            "server_time": now.isoformat(),
            "server_time_ms": int(now.timestamp() * 1000),
            "state": _phase(view, now),
            "limit": sale.buyer_limit,
            "payment_hours": sale.payment_window.total_seconds() / 3600,
            "zones": [zones[name] for name in sale.zones if name in zones],
        },
        headers={"Cache-Control": "no-store"},
    )


async def list_spaces(request: Request) -> Response:
    svc = services(request)
    view = await _view(svc, path_int(request, "sale"))
    return json_response(view.spaces_json, headers={"Cache-Control": "max-age=5"})


class _SnapshotCache:
    """The last snapshot per sale, shared by the requests of one worker."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[float, Snapshot]] = {}


_snapshots = _SnapshotCache()


async def availability(request: Request) -> Response:
    svc = services(request)
    sale_id = path_int(request, "sale")
    now = time.monotonic()
    cached = _snapshots.entries.get(sale_id)
    if (
        cached is not None
        and now - cached[0] < svc.settings.availability_cache_ms / 1000
    ):
        snapshot: Snapshot | None = cached[1]
    else:
        try:
            snapshot = await svc.store.snapshot(sale_id)
        except RedisError as exc:
            logger.error(
                "availability_failed", extra={"sale_id": sale_id, "error": repr(exc)}
            )
            raise errors.ServiceUnavailable(
                "Availability cannot be read right now; try again shortly."
            ) from None
        if snapshot is not None:
            _snapshots.entries[sale_id] = (now, snapshot)
    if snapshot is None:
        raise errors.SaleNotOpen(
            "The sale is not armed yet, so there is no availability to show."
        )
    etag = f'"{snapshot.generation}-{snapshot.version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    view = svc.catalog.cached(sale_id) or await _view(svc, sale_id)
    count = len(view.spaces)
    taken = sum(bin(byte).count("1") for byte in snapshot.bitmap)
    return json_response(
        {
            "sale": sale_id,
            "generation": snapshot.generation,
            "version": snapshot.version,
            "state": snapshot.state,
            "spaces": count,
            "taken": taken,
            "free": count - taken,
            # Bit i (most significant bit first) is 1 when space i is held.
            "bitmap": base64.b64encode(snapshot.bitmap).decode(),
        },
        headers=headers,
    )


async def create_session(request: Request) -> Response:
    svc = services(request)
    sale_id = path_int(request, "sale")
    data = await read_json_object(request, svc.settings.max_body_bytes)
    number = text_field(data, "registration_no", 32)
    code = text_field(data, "access_code", 64)
    view = await _view(svc, sale_id)

    address = request.client.host if request.client else "unknown"
    prefix = f"{SaleKeys.for_sale(sale_id).meta}:login-failures"
    pair_key = f"{prefix}:{number}:{address}"
    address_key = f"{prefix}-address:{address}"
    try:
        counted = await svc.redis.mget(pair_key, address_key)
    except RedisError:
        # Fail open: the attempt limit protects codes, the hash still checks them.
        counted = [None, None]
    if int(counted[0] or 0) >= MAX_LOGIN_FAILURES:
        raise errors.TooManyRequests(
            "Too many wrong access codes for this registration number; wait 15 "
            "minutes or ask the sales office."
        )
    if int(counted[1] or 0) >= MAX_ADDRESS_FAILURES:
        raise errors.TooManyRequests(
            "Too many wrong access codes from this network; wait 15 minutes."
        )

    try:
        row = await svc.pool.fetchrow(
            """
            SELECT registration_no, name, access_code_hash, buyer_limit
            FROM registrants WHERE sale_id = $1 AND registration_no = $2
            """,
            sale_id,
            number,
        )
    except DB_ERRORS as exc:
        logger.error("login_failed_db", extra={"sale_id": sale_id, "error": repr(exc)})
        raise errors.ServiceUnavailable(
            "Logging in is not possible right now."
        ) from None
    hasher = passwords.access_code_hasher(svc.settings.access_code_memory_kib)
    stored = row["access_code_hash"] if row else None
    valid = stored is not None and await asyncio.to_thread(
        passwords.check, hasher, stored, code
    )
    if not valid or row is None:
        try:
            async with svc.redis.pipeline(transaction=True) as pipe:
                for key in (pair_key, address_key):
                    pipe.incr(key)
                    pipe.expire(key, LOGIN_FAILURE_WINDOW_SECONDS)
                await pipe.execute()
        except RedisError as exc:
            logger.warning("login_failure_not_counted", extra={"error": repr(exc)})
        raise errors.Unauthorized(
            "The registration number or the access code is wrong."
        )

    if counted[0] is not None:
        with contextlib.suppress(RedisError):
            await svc.redis.delete(pair_key)
    session = BuyerSession(sale_id, row["registration_no"])
    token = svc.buyer_sessions.issue(session)
    response = json_response(
        {
            "token": token,
            "sale": sale_id,
            "registration_no": row["registration_no"],
            "name": row["name"],
            "limit": row["buyer_limit"],
            "opens_at": view.sale.opens_at.isoformat(),
        },
        status=201,
    )
    set_session_cookie(response, BUYER_COOKIE, token, svc.settings.session_ttl_seconds)
    return response


async def grab(request: Request) -> Response:
    """Grab through the router; `app.grab_endpoint` handles the same request faster."""
    svc = services(request)
    sale_id = path_int(request, "sale")
    session = svc.buyer_sessions.read(request, sale_id)
    key = check_idempotency_key(request.headers.get("idempotency-key"))
    body = await read_body(request, svc.settings.max_body_bytes)
    labels = requested_labels(body)
    answer = await svc.grabs.grab(sale_id, session.registration_no, key, labels)
    return json_response(answer.body, answer.status, answer.headers())


async def my_holds(request: Request) -> Response:
    svc = services(request)
    sale_id = path_int(request, "sale")
    session = svc.buyer_sessions.read(request, sale_id)
    try:
        holds = await buyer_holds(svc.pool, sale_id, session.registration_no)
    except DB_ERRORS as exc:
        logger.error("my_holds_failed", extra={"sale_id": sale_id, "error": repr(exc)})
        raise errors.ServiceUnavailable(
            "Your holds cannot be read right now; a space you won stays yours. "
            "Try again in a few seconds."
        ) from None
    return json_response(
        {"sale": sale_id, "registration_no": session.registration_no, "holds": holds},
        headers={"Cache-Control": "no-store"},
    )


routes = [
    Route("/api/sales/{sale}", sale_info, methods=["GET"]),
    Route("/api/sales/{sale}/session", create_session, methods=["POST"]),
    Route("/api/sales/{sale}/spaces", list_spaces, methods=["GET"]),
    Route("/api/sales/{sale}/availability", availability, methods=["GET"]),
    Route("/api/sales/{sale}/holds", grab, methods=["POST"]),
    Route("/api/sales/{sale}/holds/mine", my_holds, methods=["GET"]),
]
