"""Manager pages: create a sale, upload its CSV files, arm, pause, resume,
close and export it.

A rejected CSV upload shows every bad row in a table, with its line number,
and nothing of the file is imported.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import csrf, errors, management, sales
from app.inputs import is_ascii_digits
from app.pages_staff import (
    form_text,
    posted_form,
    redirect,
    staff_context,
    staff_page,
)
from app.services import Services
from app.staff import StaffMember
from app.staff_sessions import require_manager
from app.templating import render

UPLOADS = ("spaces", "registrants")
ACTIONS = ("arm", "pause", "resume", "close")
DONE_MESSAGES = {
    "created": "The sale is created as a draft. Upload its spaces and registrants.",
    "spaces": "The spaces are imported.",
    "registrants": "The registrants are imported.",
    "arm": "The sale is armed: loaded into Redis, ready for its window.",
    "pause": "The sale is paused: grabs are stopped.",
    "resume": "The sale is resumed.",
    "close": "The sale is closed.",
}
# Offsets offered for the launch times, since a datetime-local field has none.
UTC_OFFSETS = ("+08:00", "+00:00")


def _moment(form: FormData, name: str, offset: str) -> dt.datetime:
    text = form_text(form, name, 32)
    try:
        moment = dt.datetime.fromisoformat(f"{text}{offset}")
    except ValueError:
        raise errors.BadRequest(
            f"{name} {text!r} is not a date and time such as 2026-12-05T10:00.",
            field=name,
        ) from None
    return moment


def _whole_number(form: FormData, name: str, low: int, high: int) -> int:
    text = form_text(form, name, 8)
    if not is_ascii_digits(text) or not low <= int(text) <= high:
        raise errors.BadRequest(
            f"{name} must be a whole number from {low} to {high}, got {text!r}.",
            field=name,
        )
    return int(text)


def _sale_fields(form: FormData) -> dict[str, Any]:
    offset = form_text(form, "utc_offset", 6)
    if offset not in UTC_OFFSETS:
        raise errors.BadRequest(
            f"utc_offset must be one of {', '.join(UTC_OFFSETS)}, got {offset!r}.",
            field="utc_offset",
        )
    zones = [zone.strip() for zone in form_text(form, "zones", 200).split(",")]
    return {
        "name": form_text(form, "name", 200),
        "zones": [zone for zone in zones if zone],
        "opens_at": _moment(form, "opens_at", offset),
        "closes_at": _moment(form, "closes_at", offset),
        "buyer_limit": _whole_number(form, "limit", 1, 100),
        "payment_hours": _whole_number(form, "payment_hours", 1, 2160),
    }


@staff_page
async def create_sale(request: Request, svc: Services, member: StaffMember) -> Response:
    require_manager(member, "create a sale")
    form = await posted_form(request)
    try:
        fields = _sale_fields(form)
        sale = await management.create_sale(
            svc.pool, member, fields, management.SalePolicy()
        )
    except errors.AppError as exc:
        rows = await svc.pool.fetch(
            "SELECT id, name, state, opens_at, closes_at FROM sales "
            "ORDER BY id DESC LIMIT 100"
        )
        context = staff_context(request, member, sales=rows, error=exc.message)
        return render(request, "staff_home.html", context, exc.status)
    return redirect(f"/staff/sales/{sale.id}/manage?done=created")


async def _manage_page(
    request: Request,
    svc: Services,
    member: StaffMember,
    sale_id: int,
    error: str | None = None,
    bad_rows: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    sale = await sales.get_sale(svc.pool, sale_id)
    counts = await svc.pool.fetchrow(
        """
        SELECT (SELECT count(*) FROM spaces WHERE sale_id = $1) AS spaces,
               (SELECT count(*) FROM registrants WHERE sale_id = $1) AS registrants
        """,
        sale_id,
    )
    context = staff_context(
        request,
        member,
        sale=sale,
        counts=counts,
        error=error,
        bad_rows=bad_rows or [],
        done=DONE_MESSAGES.get(request.query_params.get("done", "")),
        uploads=UPLOADS,
        actions=ACTIONS,
    )
    return render(request, "staff_manage.html", context, status)


@staff_page
async def manage_page(request: Request, svc: Services, member: StaffMember) -> Response:
    require_manager(member, "manage a sale")
    return await _manage_page(request, svc, member, request.path_params["sale"])


async def _uploaded_text(request: Request, max_bytes: int) -> str:
    """Return the CSV text of the form's "file" field, checking the form."""
    declared = request.headers.get("content-length", "")
    if is_ascii_digits(declared) and int(declared) > max_bytes:
        raise errors.PayloadTooLarge(f"The upload must be at most {max_bytes} bytes.")
    async with request.form(max_files=1, max_fields=5) as form:
        csrf.check_form(request, form)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise errors.BadRequest("Choose a CSV file to upload.", field="file")
        raw = await upload.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise errors.PayloadTooLarge(f"The upload must be at most {max_bytes} bytes.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise errors.BadRequest("The CSV file is not UTF-8 text.") from None


@staff_page
async def upload(request: Request, svc: Services, member: StaffMember) -> Response:
    what = request.path_params["what"]
    sale_id: int = request.path_params["sale"]
    if what not in UPLOADS:
        raise errors.NotFound(f"Uploads are {' and '.join(UPLOADS)}, not {what!r}.")
    require_manager(member, f"import {what}")
    try:
        text = await _uploaded_text(request, svc.settings.max_upload_bytes)
        await management.import_file(
            svc.pool, member, sale_id, what, text, svc.settings.access_code_memory_kib
        )
    except errors.ImportRejected as exc:
        return await _manage_page(
            request, svc, member, sale_id, exc.message, exc.errors, exc.status
        )
    except errors.Forbidden:
        raise
    except errors.AppError as exc:
        return await _manage_page(
            request, svc, member, sale_id, exc.message, status=exc.status
        )
    return redirect(f"/staff/sales/{sale_id}/manage?done={what}")


@staff_page
async def change(request: Request, svc: Services, member: StaffMember) -> Response:
    action = request.path_params["action"]
    sale_id: int = request.path_params["sale"]
    if action not in ACTIONS:
        raise errors.NotFound(f"A sale can {', '.join(ACTIONS)}, not {action!r}.")
    require_manager(member, f"{action} a sale")
    form = await posted_form(request)
    try:
        if action == "arm":
            force = form.get("force") == "yes"
            await management.arm(svc.pool, svc.redis, member, sale_id, force)
        else:
            await management.change_state(svc.pool, svc.store, member, sale_id, action)
    except errors.AppError as exc:
        return await _manage_page(
            request, svc, member, sale_id, exc.message, status=exc.status
        )
    return redirect(f"/staff/sales/{sale_id}/manage?done={action}")


routes = [
    Route("/staff/sales", create_sale, methods=["POST"]),
    Route("/staff/sales/{sale:int}/manage", manage_page, methods=["GET"]),
    Route("/staff/sales/{sale:int}/upload/{what:str}", upload, methods=["POST"]),
    Route("/staff/sales/{sale:int}/{action:str}", change, methods=["POST"]),
]
