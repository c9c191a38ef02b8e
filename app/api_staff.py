"""Staff API under /api/staff: log in and out, find holds, take payments,
record contracts, cancel, and keep the waiting list.

Every route except logging in needs a staff session; a buyer's session is
not one (401). Cashiers and managers may use these routes, except that
cancelling and overriding an amount need a manager (403).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import cancellation, contracts, payments, sales, staff, waiting_list
from app.api_buyer import json_response
from app.errors import BadRequest
from app.hold_locks import LockedHold
from app.hold_search import HoldQuery, hold_detail, search
from app.holds import format_queue_no
from app.inputs import is_ascii_digits, path_int, read_json_object, text_field
from app.services import Services, services
from app.sessions import set_session_cookie
from app.staff import LoginThrottle, StaffMember
from app.staff_sessions import STAFF_COOKIE, StaffSessions, require_manager

_HOLD_ID = re.compile(r"[0-9]{1,18}-[0-9]{1,18}")
# Bounds amounts in fen (10 billion yuan) well inside Postgres's bigint.
MAX_INT_FIELD = 10**12


@dataclasses.dataclass(frozen=True, slots=True)
class Office:
    """The staff side's long-lived objects, built once per application."""

    sessions: StaffSessions
    throttle: LoginThrottle


def office(request: Request) -> Office:
    state = request.app.state
    found: Office | None = getattr(state, "office", None)
    if found is None:
        svc = services(request)
        # Without a configured key, sessions last until this process stops.
        secret = svc.settings.secret_key or secrets.token_urlsafe(32)
        found = Office(
            StaffSessions(secret, svc.settings.staff_session_ttl_seconds),
            LoginThrottle(svc.redis),
        )
        state.office = found
    return found


async def current_member(request: Request) -> tuple[Services, StaffMember]:
    """Return the services and the logged-in member, or raise `Unauthorized`."""
    svc = services(request)
    member = await office(request).sessions.read(request, svc.pool)
    return svc, member


def optional_text(data: dict[str, Any], name: str, max_length: int) -> str | None:
    if data.get(name) is None:
        return None
    return text_field(data, name, max_length)


def int_field(data: dict[str, Any], name: str, maximum: int = MAX_INT_FIELD) -> int:
    """Return a required JSON integer of at most `maximum`, or raise `BadRequest`."""
    value = data.get(name)
    if value is None:
        raise BadRequest(f"The field {name!r} is missing.", field=name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(
            f"The field {name!r} must be a whole number, got {value!r}.", field=name
        )
    if value > maximum:
        raise BadRequest(
            f"The field {name!r} must be at most {maximum}, got {value}.", field=name
        )
    return value


def hold_id_param(request: Request) -> str:
    raw = str(request.path_params["hold"])
    if not _HOLD_ID.fullmatch(raw):
        raise BadRequest(f"{raw!r} is not a hold id such as '12-345'.", field="hold")
    return raw


def locked_json(hold: LockedHold) -> dict[str, Any]:
    return {
        "hold": hold.id,
        "sale": hold.sale_id,
        "status": hold.status,
        "space": hold.label,
        "registration_no": hold.registration_no,
        "amount_fen": hold.price_fen,
        "deadline": hold.deadline.isoformat(),
        "paid_fen": hold.paid_fen,
        "payment_method": hold.payment_method,
        "receipt_no": hold.receipt_no,
        "paid_at": hold.paid_at and hold.paid_at.isoformat(),
        "paid_by": hold.paid_by,
        "queue_no": format_queue_no(hold.queue_no),
        "contract_no": hold.contract_no,
        "signed_at": hold.signed_at and hold.signed_at.isoformat(),
        "ended_at": hold.ended_at and hold.ended_at.isoformat(),
        "end_reason": hold.end_reason,
    }


async def login(request: Request) -> Response:
    svc = services(request)
    data = await read_json_object(request, svc.settings.max_body_bytes)
    username = text_field(data, "username", 32)
    password = text_field(data, "password", staff.MAX_PASSWORD_LENGTH)
    address = request.client.host if request.client else "unknown"
    member = await staff.authenticate(
        svc.pool, office(request).throttle, username, password, address
    )
    token = office(request).sessions.issue(member)
    response = json_response(
        {"token": token, "username": member.username, "role": member.role},
        status=201,
    )
    set_session_cookie(
        response, STAFF_COOKIE, token, svc.settings.staff_session_ttl_seconds
    )
    return response


async def logout(request: Request) -> Response:
    svc, member = await current_member(request)
    await staff.end_sessions(svc.pool, member)
    response = json_response(
        {"message": f"{member.username} is logged out on every device."}
    )
    response.delete_cookie(STAFF_COOKIE, path="/")
    return response


async def whoami(request: Request) -> Response:
    _, member = await current_member(request)
    return json_response({"username": member.username, "role": member.role})


def _page(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1
    if not is_ascii_digits(raw) or len(raw) > 6:
        raise BadRequest(
            f"page must be a whole number from 1, got {raw!r}.", field="page"
        )
    return int(raw)


async def search_holds(request: Request) -> Response:
    svc, _ = await current_member(request)
    params = request.query_params
    text = params.get("q", "")
    # A scanned QR code types the buyer's signed hold reference into q.
    hold_id = svc.hold_refs.verify(text) if text else None
    query = HoldQuery(
        text="" if hold_id else text,
        status=params.get("status") or None,
        zone=params.get("zone") or None,
        page=_page(params.get("page")),
        hold_id=hold_id,
    )
    sale = await sales.get_sale(svc.pool, path_int(request, "sale"))
    body = await search(svc.pool, sale.id, query)
    return json_response(body, headers={"Cache-Control": "no-store"})


async def show_hold(request: Request) -> Response:
    svc, _ = await current_member(request)
    body = await hold_detail(svc.pool, hold_id_param(request))
    return json_response(body, headers={"Cache-Control": "no-store"})


async def confirm_payment(request: Request) -> Response:
    svc, member = await current_member(request)
    hold_id = hold_id_param(request)
    data = await read_json_object(request, svc.settings.max_body_bytes)
    payment = payments.PaymentRequest(
        amount_fen=int_field(data, "amount_fen"),
        method=text_field(data, "method", 16),
        receipt_no=text_field(data, "receipt_no", 64),
        override_reason=optional_text(data, "override_reason", 500),
    )
    result = await payments.confirm_payment(svc.pool, hold_id, payment, member)
    body = locked_json(result.hold)
    body["repeated"] = result.repeated
    body["message"] = f"Queue number {result.queue_no} for {result.hold.label}" + (
        " (already confirmed)." if result.repeated else "."
    )
    return json_response(body, status=200 if result.repeated else 201)


async def record_contract(request: Request) -> Response:
    svc, member = await current_member(request)
    hold_id = hold_id_param(request)
    data = await read_json_object(request, svc.settings.max_body_bytes)
    contract_no = text_field(data, "contract_no", 64)
    hold, repeated = await contracts.record_contract(
        svc.pool, hold_id, contract_no, member
    )
    body = {**locked_json(hold), "repeated": repeated}
    return json_response(body, status=200 if repeated else 201)


async def cancel_hold(request: Request) -> Response:
    svc, member = await current_member(request)
    require_manager(member, "cancel a hold")
    hold_id = hold_id_param(request)
    data = await read_json_object(request, svc.settings.max_body_bytes)
    reason = text_field(data, "reason", 500)
    expected = optional_text(data, "expected_status", 16) or "held"
    hold = await cancellation.cancel_hold(
        svc.pool, svc.store, hold_id, reason, member, expected_status=expected
    )
    return json_response(locked_json(hold))


async def join_waiting_list(request: Request) -> Response:
    svc, member = await current_member(request)
    data = await read_json_object(request, svc.settings.max_body_bytes)
    entry = await waiting_list.join(
        svc.pool,
        path_int(request, "sale"),
        text_field(data, "registration_no", 32),
        optional_text(data, "zone", 16),
        optional_text(data, "kind", 16),
        member.actor,
    )
    return json_response(entry, status=201)


async def show_waiting_list(request: Request) -> Response:
    svc, _ = await current_member(request)
    sale = await sales.get_sale(svc.pool, path_int(request, "sale"))
    entries = await waiting_list.list_entries(svc.pool, sale.id)
    return json_response({"sale": sale.id, "entries": entries})


routes = [
    Route("/api/staff/session", login, methods=["POST"]),
    Route("/api/staff/session", logout, methods=["DELETE"]),
    Route("/api/staff/me", whoami, methods=["GET"]),
    Route("/api/staff/sales/{sale}/holds", search_holds, methods=["GET"]),
    Route("/api/staff/holds/{hold}", show_hold, methods=["GET"]),
    Route("/api/staff/holds/{hold}/payment", confirm_payment, methods=["POST"]),
    Route("/api/staff/holds/{hold}/contract", record_contract, methods=["POST"]),
    Route("/api/staff/holds/{hold}/cancel", cancel_hold, methods=["POST"]),
    Route("/api/staff/sales/{sale}/waiting-list", show_waiting_list, methods=["GET"]),
    Route("/api/staff/sales/{sale}/waiting-list", join_waiting_list, methods=["POST"]),
]
