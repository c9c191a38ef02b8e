"""HTML pages: the Jinja2 templates, the static files and security headers.

Every page comes from the service itself, so the Content-Security-Policy
allows scripts, styles, images and requests from the page's own origin only.
That keeps the pages working on a closed network, and means text that slips
past escaping still cannot run as script.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

_HERE = Path(__file__).parent

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self'; connect-src 'self'; form-action 'self'; "
        "base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer, browsers send
    # "Origin: null" on form posts, which the CSRF origin check rejects.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# Jinja2Templates turns autoescaping on for .html templates.
templates = Jinja2Templates(directory=_HERE / "templates")


def format_yuan(fen: int) -> str:
    """Return an amount in fen as yuan with thousands separators: '10,800'."""
    yuan, rest = divmod(fen, 100)
    return f"{yuan:,}" if rest == 0 else f"{yuan:,}.{rest:02d}"


def format_time(moment: dt.datetime | str) -> str:
    """Return a time (or an ISO 8601 string) as UTC in a fixed, readable form.

    The pages' script replaces it with the device's local time.
    """
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["yuan"] = format_yuan
templates.env.filters["utc"] = format_time

static_files = Mount(
    "/static", app=StaticFiles(directory=_HERE / "static"), name="static"
)


def render(
    request: Request, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    """Render a template with the security headers every page carries."""
    return templates.TemplateResponse(
        request, name, context, status_code=status, headers=SECURITY_HEADERS
    )
