"""Signed sessions for buyers and staff.

A session is a token signed with the secret key (itsdangerous, HMAC) that
carries who the holder is; the server keeps no session table. Buyers get it
as a cookie and as a bearer token, so browsers and load generators both work.
"""

from __future__ import annotations

import dataclasses
import time

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from app.errors import Unauthorized

BUYER_COOKIE = "parking_buyer"


@dataclasses.dataclass(frozen=True, slots=True)
class BuyerSession:
    sale_id: int
    registration_no: str


def set_session_cookie(
    response: Response, name: str, token: str, max_age_seconds: int
) -> None:
    """Set a session cookie that scripts cannot read and other sites never send."""
    response.set_cookie(
        name,
        token,
        max_age=max_age_seconds,
        httponly=True,
        samesite="strict",
        path="/",
    )


def _token(request: Request, cookie: str) -> str | None:
    header = request.headers.get("authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.cookies.get(cookie)


class BuyerSessions:
    """Issues and checks buyer tokens; checked tokens are cached per worker."""

    def __init__(self, secret_key: str, ttl_seconds: int) -> None:
        self.serializer = URLSafeTimedSerializer(secret_key, salt="buyer-session")
        self.ttl_seconds = ttl_seconds
        self._checked: dict[str, tuple[float, BuyerSession]] = {}

    def issue(self, session: BuyerSession) -> str:
        return self.serializer.dumps([session.sale_id, session.registration_no])

    def read(self, request: Request, sale_id: int) -> BuyerSession:
        """Return the caller's session for this sale or raise `Unauthorized`."""
        return self.for_token(_token(request, BUYER_COOKIE), sale_id)

    def for_token(self, token: str | None, sale_id: int) -> BuyerSession:
        """Return the session a token carries for this sale or raise `Unauthorized`."""
        if not token:
            raise Unauthorized("Log in first: this request carries no session.")
        session = self._check(token)
        if session.sale_id != sale_id:
            raise Unauthorized(
                f"This session belongs to sale {session.sale_id}; log in to "
                f"sale {sale_id}."
            )
        return session

    def _check(self, token: str) -> BuyerSession:
        now = time.monotonic()
        cached = self._checked.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            sale_id, registration_no = self.serializer.loads(
                token, max_age=self.ttl_seconds
            )
        except SignatureExpired:
            raise Unauthorized("The session has expired; log in again.") from None
        except (BadSignature, ValueError, TypeError):
            raise Unauthorized("The session is not valid; log in again.") from None
        session = BuyerSession(int(sale_id), str(registration_no))
        if len(self._checked) > 50_000:
            self._checked.clear()
        # Re-check the signature's age at most once a minute per token.
        self._checked[token] = (now + 60.0, session)
        return session
