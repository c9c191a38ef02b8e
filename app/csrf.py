"""Protection of the pages' forms against cross-site request forgery.

Two checks guard every staff form post, and the buyer's logout uses the
first. The browser's Origin header, when sent, must name this service's own
origin. The form must also carry a token derived from the staff session
cookie: another site can make a browser post a form but cannot read that
HttpOnly cookie, so it cannot compute the token.
The session cookie is SameSite=Strict as well, which on its own already
keeps it off cross-site posts in current browsers.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.datastructures import FormData
from starlette.requests import Request

from app.errors import Forbidden
from app.staff_sessions import STAFF_COOKIE

FIELD = "csrf_token"


def token_for(session_token: str) -> str:
    """Return the form token that belongs to a staff session token."""
    digest = hashlib.sha256(b"parking-staff-form\0" + session_token.encode())
    return digest.hexdigest()


def form_token(request: Request) -> str:
    """Return the token for the forms of this request's staff session."""
    return token_for(request.cookies.get(STAFF_COOKIE, ""))


def check_origin(request: Request) -> None:
    """Raise `Forbidden` when the Origin header names another site."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own:
        raise Forbidden(
            f"The form was sent from {origin!r}, not from this site; open the "
            "page on this site and send it again."
        )


def check_form(request: Request, form: FormData) -> None:
    """Raise `Forbidden` unless the post comes from one of our own forms."""
    check_origin(request)
    session_token = request.cookies.get(STAFF_COOKIE)
    sent = form.get(FIELD)
    if not session_token or not isinstance(sent, str):
        raise Forbidden("The form has expired; reload the page and send it again.")
    if not hmac.compare_digest(sent, token_for(session_token)):
        raise Forbidden("The form has expired; reload the page and send it again.")
