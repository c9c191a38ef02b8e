"""Staff pages at the sales-office counter: log in, find a hold, take the
payment, print the queue ticket, record the contract, cancel, watch the board.

Pages read and change data through the same modules as the staff API and
sign in with the same session cookie. Forms post back here and pass the
cross-site request forgery checks of `app.csrf`. Each change then redirects
(303) to a page, so reloading that page does not send the change again.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app import cancellation, contracts, csrf, errors, payments, reports, sales, staff
from app.api_staff import MAX_INT_FIELD, current_member, office
from app.database import DB_ERRORS
from app.hold_search import STATUSES, HoldQuery, hold_detail, search
from app.inputs import check_plain_text, is_ascii_digits, yuan_to_fen
from app.services import Services, services
from app.sessions import set_session_cookie
from app.staff import StaffMember
from app.staff_sessions import STAFF_COOKIE, require_manager
from app.templating import render

logger = logging.getLogger(__name__)

StaffHandler = Callable[[Request, Services, StaffMember], Awaitable[Response]]

_HOLD_ID = re.compile(r"[0-9]{1,18}-[0-9]{1,18}")
DONE_MESSAGES = {
    "contract": "The contract is recorded.",
    "cancel": "The hold is cancelled and its space released.",
}


def redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


def staff_context(
    request: Request, member: StaffMember, **extra: Any
) -> dict[str, Any]:
    """Return what every staff template needs, plus `extra`."""
    return {"member": member, "csrf_token": csrf.form_token(request), **extra}


def staff_page(handler: StaffHandler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a staff page: log in first, and show errors as a page."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            svc, member = await current_member(request)
        except errors.Unauthorized:
            return redirect(f"/staff/login?next={quote(request.url.path)}")
        try:
            return await handler(request, svc, member)
        except errors.AppError as exc:
            context = staff_context(request, member, message=exc.message)
            return render(request, "staff_error.html", context, exc.status)
        except DB_ERRORS as exc:
            logger.error(
                "staff_page_failed",
                extra={"path": request.url.path, "error": repr(exc)},
            )
            context = staff_context(
                request,
                member,
                message="The database cannot be reached; try again in a minute.",
            )
            return render(request, "staff_error.html", context, 503)

    return endpoint


async def posted_form(request: Request) -> FormData:
    """Read a small urlencoded form and check it came from our own page."""
    form = await request.form(max_files=0, max_fields=20)
    csrf.check_form(request, form)
    return form


def form_text(form: FormData, name: str, max_length: int) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise errors.BadRequest(f"Fill in the field {name!r}.", field=name)
    if len(text) > max_length:
        raise errors.BadRequest(
            f"The field {name!r} must have at most {max_length} characters.",
            field=name,
        )
    check_plain_text(text, name)
    return text


def optional_form_text(form: FormData, name: str, max_length: int) -> str | None:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    return form_text(form, name, max_length)


def amount_fen(text: str) -> int:
    """Return an amount such as '10,800' or '10800.50' yuan in fen."""
    fen = yuan_to_fen(text, MAX_INT_FIELD)
    if fen is None:
        raise errors.BadRequest(
            f"The amount {text!r} is not a number of yuan such as 10800 or "
            "10,800.50, with at most two decimals.",
            field="amount",
        )
    return fen


# ---- Logging in and out ------------------------------------------------


def _next_path(raw: str | None) -> str:
    # Only paths inside the staff pages, so the link cannot send staff away.
    if raw and raw.startswith("/staff") and "//" not in raw and "\\" not in raw:
        return raw
    return "/staff"


async def login_page(request: Request) -> Response:
    context = {"next": _next_path(request.query_params.get("next")), "error": None}
    return render(request, "staff_login.html", context)


async def login(request: Request) -> Response:
    svc = services(request)
    form = await request.form(max_files=0, max_fields=10)
    next_path = _next_path(str(form.get("next") or ""))
    try:
        csrf.check_origin(request)
        username = form_text(form, "username", 32)
        password = form_text(form, "password", staff.MAX_PASSWORD_LENGTH)
        address = request.client.host if request.client else "unknown"
        member = await staff.authenticate(
            svc.pool, office(request).throttle, username, password, address
        )
    except errors.AppError as exc:
        context = {"next": next_path, "error": exc.message}
        return render(request, "staff_login.html", context, exc.status)
    response = redirect(next_path)
    set_session_cookie(
        response,
        STAFF_COOKIE,
        office(request).sessions.issue(member),
        svc.settings.staff_session_ttl_seconds,
    )
    return response


@staff_page
async def logout(request: Request, svc: Services, member: StaffMember) -> Response:
    await posted_form(request)
    await staff.end_sessions(svc.pool, member)
    response = redirect("/staff/login")
    response.delete_cookie(STAFF_COOKIE, path="/")
    return response


# ---- Finding holds -----------------------------------------------------


@staff_page
async def home(request: Request, svc: Services, member: StaffMember) -> Response:
    rows = await svc.pool.fetch(
        "SELECT id, name, state, opens_at, closes_at FROM sales "
        "ORDER BY id DESC LIMIT 100"
    )
    context = staff_context(request, member, sales=rows, error=None)
    return render(request, "staff_home.html", context)


def _hold_from_text(svc: Services, text: str) -> str | None:
    """Return the hold a scanned reference or a typed hold id names."""
    text = text.strip()
    if _HOLD_ID.fullmatch(text):
        return text
    return svc.hold_refs.verify(text)


@staff_page
async def find(request: Request, svc: Services, member: StaffMember) -> Response:
    """Open the hold named by a QR reference or hold id from any sale."""
    hold_id = _hold_from_text(svc, request.query_params.get("q", "")[:200])
    if hold_id is None:
        raise errors.BadRequest(
            "That is not a valid hold reference or hold id; scan the buyer's QR "
            "code again or search the sale's holds by name or space."
        )
    return redirect(f"/staff/holds/{hold_id}")


@staff_page
async def search_page(request: Request, svc: Services, member: StaffMember) -> Response:
    sale = await sales.get_sale(svc.pool, request.path_params["sale"])
    params = request.query_params
    text = params.get("q", "")
    hold_id = _hold_from_text(svc, text) if text else None
    if hold_id is not None:
        return redirect(f"/staff/holds/{hold_id}")
    page = params.get("page", "1")
    query = HoldQuery(
        text=text,
        status=params.get("status") or None,
        zone=params.get("zone") or None,
        page=int(page) if is_ascii_digits(page) and len(page) < 7 else 1,
    )
    found = await search(svc.pool, sale.id, query)
    context = staff_context(
        request, member, sale=sale, query=query, found=found, statuses=STATUSES
    )
    return render(request, "staff_search.html", context)


# ---- One hold: payment, contract, cancel, ticket -----------------------


async def _hold_page(
    request: Request,
    svc: Services,
    member: StaffMember,
    hold_id: str,
    error: str | None = None,
    status: int = 200,
) -> Response:
    hold = await hold_detail(svc.pool, hold_id)
    done = DONE_MESSAGES.get(request.query_params.get("done", ""))
    context = staff_context(
        request,
        member,
        hold=hold,
        error=error,
        done=done,
        methods=payments.METHODS,
    )
    return render(request, "staff_hold.html", context, status)


def _hold_id(request: Request) -> str:
    hold_id = str(request.path_params["hold"])
    if not _HOLD_ID.fullmatch(hold_id):
        raise errors.BadRequest(f"{hold_id!r} is not a hold id such as '12-345'.")
    return hold_id


@staff_page
async def hold_page(request: Request, svc: Services, member: StaffMember) -> Response:
    return await _hold_page(request, svc, member, _hold_id(request))


async def _hold_action(
    request: Request,
    svc: Services,
    member: StaffMember,
    action: Callable[[FormData], Awaitable[str]],
) -> Response:
    """Run a form's action and redirect, or show the hold page with the error."""
    hold_id = _hold_id(request)
    form = await posted_form(request)
    try:
        target = await action(form)
    except errors.AppError as exc:
        return await _hold_page(request, svc, member, hold_id, exc.message, exc.status)
    return redirect(target)


@staff_page
async def pay(request: Request, svc: Services, member: StaffMember) -> Response:
    hold_id = _hold_id(request)

    async def confirm(form: FormData) -> str:
        payment = payments.PaymentRequest(
            amount_fen=amount_fen(form_text(form, "amount", 32)),
            method=form_text(form, "method", 16),
            receipt_no=form_text(form, "receipt_no", 64),
            override_reason=optional_form_text(form, "override_reason", 500),
        )
        await payments.confirm_payment(svc.pool, hold_id, payment, member)
        return f"/staff/holds/{hold_id}/ticket"

    return await _hold_action(request, svc, member, confirm)


@staff_page
async def sign(request: Request, svc: Services, member: StaffMember) -> Response:
    hold_id = _hold_id(request)

    async def record(form: FormData) -> str:
        contract_no = form_text(form, "contract_no", 64)
        await contracts.record_contract(svc.pool, hold_id, contract_no, member)
        return f"/staff/holds/{hold_id}?done=contract"

    return await _hold_action(request, svc, member, record)


@staff_page
async def cancel(request: Request, svc: Services, member: StaffMember) -> Response:
    require_manager(member, "cancel a hold")
    hold_id = _hold_id(request)

    async def end(form: FormData) -> str:
        reason = form_text(form, "reason", 500)
        expected = form_text(form, "expected_status", 16)
        await cancellation.cancel_hold(
            svc.pool, svc.store, hold_id, reason, member, expected_status=expected
        )
        return f"/staff/holds/{hold_id}?done=cancel"

    return await _hold_action(request, svc, member, end)


@staff_page
async def ticket(request: Request, svc: Services, member: StaffMember) -> Response:
    hold = await hold_detail(svc.pool, _hold_id(request))
    if hold["queue_no"] is None:
        raise errors.Conflict(
            f"Hold {hold['hold']} has no queue number yet: confirm its payment first."
        )
    sale = await sales.get_sale(svc.pool, hold["sale"])
    context = staff_context(request, member, hold=hold, sale=sale)
    return render(request, "staff_ticket.html", context)


# ---- Live board --------------------------------------------------------


@staff_page
async def board(request: Request, svc: Services, member: StaffMember) -> Response:
    sale = await sales.get_sale(svc.pool, request.path_params["sale"])
    summary = await reports.summary(svc.pool, sale.id, sale.zones)
    context = staff_context(request, member, sale=sale, summary=summary)
    return render(request, "staff_board.html", context)


routes = [
    Route("/staff/login", login_page, methods=["GET"]),
    Route("/staff/login", login, methods=["POST"]),
    Route("/staff/logout", logout, methods=["POST"]),
    Route("/staff", home, methods=["GET"]),
    Route("/staff/find", find, methods=["GET"]),
    Route("/staff/sales/{sale:int}/holds", search_page, methods=["GET"]),
    Route("/staff/sales/{sale:int}/board", board, methods=["GET"]),
    Route("/staff/holds/{hold}", hold_page, methods=["GET"]),
    Route("/staff/holds/{hold}/payment", pay, methods=["POST"]),
    Route("/staff/holds/{hold}/contract", sign, methods=["POST"]),
    Route("/staff/holds/{hold}/cancel", cancel, methods=["POST"]),
    Route("/staff/holds/{hold}/ticket", ticket, methods=["GET"]),
]
