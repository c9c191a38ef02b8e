"""Signed staff sessions and the role checks in front of every staff route.

A token is signed with the secret key under its own salt, so a buyer's token
is never accepted here. It carries the staff id and the account's session
epoch; each request re-reads the account, so a logout (which moves the
epoch on) or a role change applies at once.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.requests import Request

from app.errors import Forbidden, Unauthorized
from app.staff import StaffMember, load_member
from app.types import DbExecutor

STAFF_COOKIE = "parking_staff"


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.cookies.get(STAFF_COOKIE)


class StaffSessions:
    def __init__(self, secret_key: str, ttl_seconds: int) -> None:
        self.serializer = URLSafeTimedSerializer(secret_key, salt="staff-session")
        self.ttl_seconds = ttl_seconds

    def issue(self, member: StaffMember) -> str:
        return self.serializer.dumps([member.id, member.session_epoch])

    async def read(self, request: Request, db: DbExecutor) -> StaffMember:
        """Return the logged-in member or raise `Unauthorized`."""
        token = _token(request)
        if not token:
            raise Unauthorized("Log in as staff first: this request has no session.")
        try:
            staff_id, epoch = self.serializer.loads(token, max_age=self.ttl_seconds)
            staff_id, epoch = int(staff_id), int(epoch)
        except SignatureExpired:
            raise Unauthorized("The staff session has expired; log in again.") from None
        except (BadSignature, ValueError, TypeError):
            raise Unauthorized(
                "The session is not a valid staff session; log in as staff."
            ) from None
        member = await load_member(db, staff_id)
        if member is None or member.session_epoch != epoch:
            raise Unauthorized("The staff session has ended; log in again.")
        return member


def require_manager(member: StaffMember, action: str) -> None:
    """Raise `Forbidden` unless the member is a manager."""
    if not member.is_manager:
        raise Forbidden(
            f"Only a manager can {action}; {member.username!r} is a {member.role}."
        )
