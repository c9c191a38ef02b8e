"""Domain errors and the one place that maps them to HTTP answers.

Handlers raise an `AppError` subclass; `app.web` turns it into
`{"error": code, "message": text}` with the class's status code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class AppError(Exception):
    """An error a client can act on: a code, a sentence and an HTTP status."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotRegistered(AppError):
    status = 403
    code = "not_registered"


class SaleNotOpen(AppError):
    status = 403
    code = "sale_not_open"


class SalePaused(AppError):
    status = 403
    code = "sale_paused"


class SaleClosed(AppError):
    status = 410
    code = "sale_closed"


class NotFound(AppError):
    status = 404
    code = "not_found"


class UnknownSale(NotFound):
    code = "unknown_sale"


class UnknownSpace(NotFound):
    code = "unknown_space"


class Conflict(AppError):
    status = 409
    code = "conflict"


class SpaceTaken(Conflict):
    code = "space_taken"


class LimitReached(Conflict):
    code = "limit_reached"


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"


class ServiceUnavailable(AppError):
    status = 503
    code = "unavailable"


class ImportRejected(AppError):
    """A CSV file failed validation; `errors` lists every bad line."""

    status = 422
    code = "invalid_csv"

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message, errors=errors)
        self.errors = errors


class UnknownHold(NotFound):
    code = "unknown_hold"


class UnknownStaff(NotFound):
    code = "unknown_staff"


class AmountMismatch(AppError):
    """The amount paid differs from the amount due, without an override."""

    status = 422
    code = "amount_mismatch"


class HoldExpired(Conflict):
    code = "hold_expired"


class HoldCancelled(Conflict):
    code = "hold_cancelled"


class HoldNotPaid(Conflict):
    code = "hold_not_paid"


class HoldSigned(Conflict):
    code = "hold_signed"


class HoldChanged(Conflict):
    """The hold's status is not the one the caller expected to act on."""

    code = "hold_changed"


class AlreadyPaid(Conflict):
    code = "already_paid"


class AlreadySigned(Conflict):
    code = "already_signed"


class DuplicateNumber(Conflict):
    """A receipt or contract number is already used by another hold."""

    code = "duplicate_number"


# Errors that mean a store cannot be reached right now, not that the request
# or the code is wrong: the client may retry.
STORE_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
)
