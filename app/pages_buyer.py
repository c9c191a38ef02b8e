"""Buyer pages: the sale page, the "my result" fragment and the public results.

The pages are rendered here from the same catalog and queries as the buyer
API. Everything live (login, countdown, availability, the grab) runs in
`static/buyer.js` against that API, so the grab's hot path stays JSON only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app import audit, errors
from app.api_buyer import _phase, _view
from app.catalog import SaleView
from app.csrf import check_origin
from app.database import DB_ERRORS
from app.grabbing import MAX_RANKED
from app.hold_refs import qr_svg
from app.holds import buyer_holds
from app.results import sold_spaces
from app.sales import Space, get_sale
from app.services import Services, services
from app.sessions import BUYER_COOKIE
from app.templating import render

logger = logging.getLogger(__name__)

KIND_NAMES = {
    "standard": "Standard",
    "large": "Large",
    "ev_charging": "EV charging",
    "tandem": "Tandem",
}


@dataclasses.dataclass(frozen=True, slots=True)
class LevelPlan:
    level: str
    spaces: list[Space]


@dataclasses.dataclass(frozen=True, slots=True)
class ZonePlan:
    zone: str
    levels: list[LevelPlan]


def zone_plan(view: SaleView) -> list[ZonePlan]:
    """Group the spaces by zone, in the sale's zone order, then by level."""
    grouped: dict[str, dict[str, list[Space]]] = {zone: {} for zone in view.sale.zones}
    for space in view.spaces:
        levels = grouped.setdefault(space.zone, {})
        levels.setdefault(space.level, []).append(space)
    return [
        ZonePlan(zone, [LevelPlan(level, spaces) for level, spaces in levels.items()])
        for zone, levels in grouped.items()
        if levels
    ]


def _millis(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _error_page(request: Request, exc: errors.AppError) -> Response:
    # AppError messages are written for clients, so they may be shown as is.
    return render(
        request,
        "error.html",
        {"status": exc.status, "message": exc.message},
        status=exc.status,
    )


def _logged_in_buyer(request: Request, svc: Services, sale_id: int) -> str | None:
    try:
        return svc.buyer_sessions.read(request, sale_id).registration_no
    except errors.Unauthorized:
        return None


async def sale_page(request: Request) -> Response:
    svc = services(request)
    sale_id: int = request.path_params["sale"]
    try:
        view = await _view(svc, sale_id)
    except errors.AppError as exc:
        return _error_page(request, exc)
    sale = view.sale
    registration_no = _logged_in_buyer(request, svc, sale_id)
    holds = await _holds_or_none(svc, sale_id, registration_no)
    context = {
        "sale": sale,
        "phase": _phase(view, dt.datetime.now(dt.UTC)),
        "opens_at_ms": _millis(sale.opens_at),
        "closes_at_ms": _millis(sale.closes_at),
        "zones": zone_plan(view),
        "kind_names": KIND_NAMES,
        "max_shortlist": MAX_RANKED,
        "office_address": svc.settings.sales_office_address,
        "registration_no": registration_no,
        "holds": holds,
    }
    return render(request, "buyer.html", context)


async def _holds_or_none(
    svc: Services, sale_id: int, registration_no: str | None
) -> list[dict[str, Any]] | None:
    """Return the buyer's holds with their QR codes; None when unreadable."""
    if registration_no is None:
        return []
    try:
        holds = await buyer_holds(svc.pool, sale_id, registration_no)
    except DB_ERRORS as exc:
        logger.error(
            "buyer_page_holds_failed", extra={"sale_id": sale_id, "error": repr(exc)}
        )
        return None
    for hold in holds:
        # Only a paid hold gets a reference: it is what the counter scans.
        if hold["status"] in ("paid", "signed"):
            reference = svc.hold_refs.sign(hold["hold"])
            hold["reference"] = reference
            hold["qr_svg"] = Markup(qr_svg(reference))
    return holds


async def my_result(request: Request) -> Response:
    """Render the "my result" part of the sale page, for the page to refresh."""
    svc = services(request)
    sale_id: int = request.path_params["sale"]
    registration_no = _logged_in_buyer(request, svc, sale_id)
    if registration_no is None:
        return render(request, "_mine.html", {"holds": [], "logged_out": True}, 401)
    holds = await _holds_or_none(svc, sale_id, registration_no)
    context = {
        "holds": holds,
        "office_address": svc.settings.sales_office_address,
        "logged_out": False,
    }
    return render(request, "_mine.html", context, 200 if holds is not None else 503)


async def results_page(request: Request) -> Response:
    """List the sold spaces of a closed sale, winners masked, for anyone."""
    svc = services(request)
    sale_id: int = request.path_params["sale"]
    try:
        sale = await get_sale(svc.pool, sale_id)
        closed = sale.state == "closed" or dt.datetime.now(dt.UTC) >= sale.closes_at
        sold = await sold_spaces(svc.pool, sale_id) if closed else []
        entries, chain_hash = await audit.final_hash(svc.pool, sale_id)
    except errors.AppError as exc:
        return _error_page(request, exc)
    except DB_ERRORS as exc:
        logger.error("results_failed", extra={"sale_id": sale_id, "error": repr(exc)})
        return _error_page(
            request,
            errors.ServiceUnavailable(
                "The results cannot be read right now; try again in a minute."
            ),
        )
    context = {
        "sale": sale,
        "closed": closed,
        "sold": sold,
        "total_fen": sum(space.price_fen for space in sold),
        "audit_entries": entries,
        "audit_hash": chain_hash,
    }
    return render(request, "results.html", context)


async def log_out(request: Request) -> Response:
    """End the buyer's session on this device and go back to the sale page."""
    sale_id: int = request.path_params["sale"]
    try:
        check_origin(request)
    except errors.AppError as exc:
        return _error_page(request, exc)
    response = RedirectResponse(f"/sales/{sale_id}", status_code=303)
    response.delete_cookie(BUYER_COOKIE, path="/")
    return response


routes = [
    Route("/sales/{sale:int}", sale_page, methods=["GET"]),
    Route("/sales/{sale:int}/logout", log_out, methods=["POST"]),
    Route("/sales/{sale:int}/mine", my_result, methods=["GET"]),
    Route("/sales/{sale:int}/results", results_page, methods=["GET"]),
]
