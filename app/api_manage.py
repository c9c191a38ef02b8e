"""Sale management and reports under /api/staff/sales.

Creating, configuring, importing, arming, pausing, resuming and closing a
sale need a manager. Every staff member may read the summary, the exports
and the reconciliation.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import management, reports, sales
from app.api_buyer import json_response
from app.api_staff import current_member, int_field, optional_text
from app.errors import BadRequest, PayloadTooLarge
from app.inputs import (
    is_ascii_digits,
    path_int,
    read_body,
    read_json_object,
    text_field,
)
from app.reconcile import reconcile as compare_stores
from app.staff_sessions import require_manager


def _moment(data: dict[str, Any], name: str) -> dt.datetime:
    text = text_field(data, name, 64)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{name} {text!r} is not an ISO 8601 time such as "
            "2026-12-05T10:00:00+08:00.",
            field=name,
        ) from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name} needs a time zone, such as +08:00.", field=name)
    return moment


def _number(data: dict[str, Any], name: str, default: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"The field {name!r} must be a number.", field=name)
    return float(value)


def _policy(data: dict[str, Any]) -> management.SalePolicy:
    return management.SalePolicy(
        released_to=optional_text(data, "released_to", 16) or "market",
        offer_hours=_number(data, "offer_hours", 24.0),
    )


async def create_sale(request: Request) -> Response:
    svc, member = await current_member(request)
    require_manager(member, "create a sale")
    data = await read_json_object(request, svc.settings.max_body_bytes)
    zones = data.get("zones")
    if not isinstance(zones, list) or not all(isinstance(z, str) for z in zones):
        raise BadRequest(
            'zones must be a list of zone names, such as ["A", "B"].', field="zones"
        )
    fields = {
        "name": text_field(data, "name", 200),
        "zones": zones,
        "opens_at": _moment(data, "opens_at"),
        "closes_at": _moment(data, "closes_at"),
        "buyer_limit": int_field(data, "limit") if "limit" in data else 1,
        "payment_hours": _number(data, "payment_hours", 48.0),
    }
    sale = await management.create_sale(svc.pool, member, fields, _policy(data))
    body = management.sale_json(sale)
    body.update(await management.sale_policy(svc.pool, sale.id))
    return json_response(body, status=201)


async def show_sale(request: Request) -> Response:
    svc, _ = await current_member(request)
    sale = await sales.get_sale(svc.pool, path_int(request, "sale"))
    body = management.sale_json(sale)
    body.update(await management.sale_policy(svc.pool, sale.id))
    return json_response(body, headers={"Cache-Control": "no-store"})


async def update_policy(request: Request) -> Response:
    svc, member = await current_member(request)
    require_manager(member, "change a sale's settings")
    data = await read_json_object(request, svc.settings.max_body_bytes)
    policy = await management.update_policy(
        svc.pool, member, path_int(request, "sale"), _policy(data)
    )
    return json_response(policy)


async def _csv_text(request: Request, max_bytes: int) -> str:
    """Return the uploaded CSV: a multipart field "file" or a text/csv body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        declared = request.headers.get("content-length", "")
        if is_ascii_digits(declared) and int(declared) > max_bytes:
            raise PayloadTooLarge(f"The upload must be at most {max_bytes} bytes.")
        async with request.form(max_files=1, max_fields=10) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise BadRequest(
                    'Send the CSV file in the multipart field "file".', field="file"
                )
            raw = await upload.read(max_bytes + 1)
    elif content_type.startswith("text/csv"):
        raw = await read_body(request, max_bytes)
    else:
        raise BadRequest(
            'Upload the CSV as multipart/form-data (field "file") or as a '
            "text/csv body."
        )
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The upload must be at most {max_bytes} bytes.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The CSV file is not UTF-8 text.", field="file") from None


async def _upload(request: Request, what: str) -> Response:
    svc, member = await current_member(request)
    require_manager(member, f"import {what}")
    sale_id = path_int(request, "sale")
    text = await _csv_text(request, svc.settings.max_upload_bytes)
    count = await management.import_file(
        svc.pool, member, sale_id, what, text, svc.settings.access_code_memory_kib
    )
    return json_response({"sale": sale_id, what: count}, status=201)


async def upload_spaces(request: Request) -> Response:
    return await _upload(request, "spaces")


async def upload_registrants(request: Request) -> Response:
    return await _upload(request, "registrants")


async def arm_sale(request: Request) -> Response:
    svc, member = await current_member(request)
    require_manager(member, "arm a sale")
    sale_id = path_int(request, "sale")
    force = request.query_params.get("force", "") in ("1", "true", "yes")
    sale = await management.arm(svc.pool, svc.redis, member, sale_id, force)
    return json_response(management.sale_json(sale))


async def _change_state(request: Request, action: str) -> Response:
    svc, member = await current_member(request)
    require_manager(member, f"{action} a sale")
    sale = await management.change_state(
        svc.pool, svc.store, member, path_int(request, "sale"), action
    )
    return json_response(management.sale_json(sale))


async def pause_sale(request: Request) -> Response:
    return await _change_state(request, "pause")


async def resume_sale(request: Request) -> Response:
    return await _change_state(request, "resume")


async def close_sale(request: Request) -> Response:
    return await _change_state(request, "close")


async def show_summary(request: Request) -> Response:
    svc, _ = await current_member(request)
    sale = await sales.get_sale(svc.pool, path_int(request, "sale"))
    body = await reports.summary(svc.pool, sale.id, sale.zones)
    body["state"] = sale.state
    return json_response(body, headers={"Cache-Control": "no-store"})


async def _csv_response(request: Request, kind: str) -> Response:
    svc, _ = await current_member(request)
    sale = await sales.get_sale(svc.pool, path_int(request, "sale"))
    # One snapshot, so the final hash matches the rows above it.
    async with (
        svc.pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        if kind == "results":
            text = await reports.results_csv(connection, sale.id)
        else:
            text = await reports.audit_csv(connection, sale.id)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="sale-{sale.id}-{kind}.csv"',
            "Cache-Control": "no-store",
        },
    )


async def export_results(request: Request) -> Response:
    return await _csv_response(request, "results")


async def export_audit(request: Request) -> Response:
    return await _csv_response(request, "audit")


async def reconcile_sale(request: Request) -> Response:
    svc, _ = await current_member(request)
    sale = await sales.get_sale(svc.pool, path_int(request, "sale"))
    report = await compare_stores(svc.pool, svc.redis, sale.id)
    return json_response(
        {
            "sale": sale.id,
            "agrees": report.agrees,
            "live_in_postgres": report.live_in_postgres,
            "held_in_redis": report.held_in_redis,
            "unrecorded_grants": report.unrecorded_grants,
            "differences": report.differences,
        }
    )


routes = [
    Route("/api/staff/sales", create_sale, methods=["POST"]),
    Route("/api/staff/sales/{sale}", show_sale, methods=["GET"]),
    Route("/api/staff/sales/{sale}/settings", update_policy, methods=["POST"]),
    Route("/api/staff/sales/{sale}/spaces", upload_spaces, methods=["POST"]),
    Route("/api/staff/sales/{sale}/registrants", upload_registrants, methods=["POST"]),
    Route("/api/staff/sales/{sale}/arm", arm_sale, methods=["POST"]),
    Route("/api/staff/sales/{sale}/pause", pause_sale, methods=["POST"]),
    Route("/api/staff/sales/{sale}/resume", resume_sale, methods=["POST"]),
    Route("/api/staff/sales/{sale}/close", close_sale, methods=["POST"]),
    Route("/api/staff/sales/{sale}/summary", show_summary, methods=["GET"]),
    Route("/api/staff/sales/{sale}/export.csv", export_results, methods=["GET"]),
    Route("/api/staff/sales/{sale}/audit.csv", export_audit, methods=["GET"]),
    Route("/api/staff/sales/{sale}/reconcile", reconcile_sale, methods=["GET"]),
]
