"""Buyer API for the waiting list under /api/sales/{sale}/waiting-list.

A registrant who got nothing joins the line for a zone, a kind, or both,
and can read their place in it. When a space they accept is released, it is
offered to them as a hold, which then appears under their holds.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import management, waiting_list
from app.api_buyer import json_response
from app.api_staff import optional_text
from app.errors import Conflict
from app.inputs import path_int, read_json_object
from app.services import services


async def join(request: Request) -> Response:
    svc = services(request)
    sale_id = path_int(request, "sale")
    session = svc.buyer_sessions.read(request, sale_id)
    data = await read_json_object(request, svc.settings.max_body_bytes)
    policy = await management.sale_policy(svc.pool, sale_id)
    if policy.get("released_to") != "waiting_list":
        # Joining would never lead to an offer. Staff can still add people
        # before they switch the sale to its waiting list.
        raise Conflict(
            f"Sale {sale_id} offers released spaces to everyone, not through a "
            "waiting list; watch the availability for spaces that come free."
        )
    entry = await waiting_list.join(
        svc.pool,
        sale_id,
        session.registration_no,
        optional_text(data, "zone", 16),
        optional_text(data, "kind", 16),
        f"buyer:{session.registration_no}",
    )
    entry["position"] = (
        await waiting_list.buyer_entry(svc.pool, sale_id, session.registration_no) or {}
    ).get("position")
    return json_response(entry, status=201)


async def mine(request: Request) -> Response:
    svc = services(request)
    sale_id = path_int(request, "sale")
    session = svc.buyer_sessions.read(request, sale_id)
    entry = await waiting_list.buyer_entry(svc.pool, sale_id, session.registration_no)
    return json_response(
        {"sale": sale_id, "entry": entry}, headers={"Cache-Control": "no-store"}
    )


routes = [
    Route("/api/sales/{sale}/waiting-list", join, methods=["POST"]),
    Route("/api/sales/{sale}/waiting-list/mine", mine, methods=["GET"]),
]
