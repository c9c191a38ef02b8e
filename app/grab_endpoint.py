"""POST /api/sales/{sale}/holds handled in plain ASGI, ahead of the router.

At launch nearly every request is a grab, and much of a grab's cost was the
framework around it (router, request and response objects, middleware).
`app.web.ParkingApp` hands grabs to `GrabEndpoint.handle`, which applies the
same validation and the same `GrabService` as the routed handler in
`app.api_buyer`; that handler serves when `PARKING_GRAB_FAST_PATH` is off.
"""

from __future__ import annotations

import logging
import re
import time
from http.cookies import SimpleCookie

import orjson
from starlette.types import Receive, Scope, Send

from app import errors, metrics
from app.grab_input import check_idempotency_key, requested_labels
from app.inputs import is_ascii_digits
from app.logs import new_request_id, request_id
from app.services import Services
from app.sessions import BUYER_COOKIE

logger = logging.getLogger(__name__)

_PATH = re.compile(r"/api/sales/([0-9]{1,18})/holds")
_JSON = (b"content-type", b"application/json")


def _token(headers: dict[bytes, bytes]) -> str | None:
    authorization = headers.get(b"authorization")
    if authorization is not None and authorization[:7].lower() == b"bearer ":
        return authorization[7:].strip().decode("latin-1")
    cookie_header = headers.get(b"cookie")
    if cookie_header is None:
        return None
    morsel = SimpleCookie(cookie_header.decode("latin-1")).get(BUYER_COOKIE)
    return morsel.value if morsel is not None else None


async def _body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None:
        if not is_ascii_digits(declared.decode("latin-1")):
            raise errors.BadRequest("The Content-Length header is not a number.")
        if int(declared) > limit:
            raise errors.PayloadTooLarge(f"The body must be at most {limit} bytes.")
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        # The usual case: the whole body arrived with the headers.
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise errors.PayloadTooLarge(f"The body must be at most {limit} bytes.")
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise errors.BadRequest("The client went away before sending the body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(f"The body must be at most {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


class GrabEndpoint:
    """Handles grab requests; `handle` returns False for any other request."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Handle a grab and return True, or return False and send nothing."""
        match = _PATH.fullmatch(scope["path"])
        svc: Services | None = getattr(scope["app"].state, "services", None)
        if match is None or svc is None or not svc.settings.grab_fast_path:
            return False

        started = time.perf_counter()
        current_id = new_request_id()
        token = request_id.set(current_id)
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, body, extra = await self._grab(svc, int(match[1]), scope, receive)
        except errors.AppError as exc:
            status, body = exc.status, orjson.dumps(exc.body())
            if exc.status == 429 and "retry_after" in exc.details:
                seconds = max(1, round(exc.details["retry_after"]))
                extra = [(b"retry-after", str(seconds).encode())]
        except Exception:
            # The same response as the application's handler for unexpected errors.
            logger.exception("grab_failed", extra={"path": scope["path"]})
            status = 500
            body = orjson.dumps(
                {
                    "error": "internal_error",
                    "message": "Something went wrong on our side; the request id "
                    f"is {current_id}.",
                }
            )
        finally:
            request_id.reset(token)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    _JSON,
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", current_id.encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        metrics.observe_request("grab", time.perf_counter() - started)
        return True

    @staticmethod
    async def _grab(
        svc: Services, sale_id: int, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        headers = dict(scope["headers"])
        session = svc.buyer_sessions.for_token(_token(headers), sale_id)
        raw_key = headers.get(b"idempotency-key")
        key = check_idempotency_key(
            raw_key.decode("latin-1") if raw_key is not None else None
        )
        body = await _body(receive, headers, svc.settings.max_body_bytes)
        labels = requested_labels(body)
        answer = await svc.grabs.grab(sale_id, session.registration_no, key, labels)
        extra = [(b"idempotent-replayed", b"true")] if answer.replayed else []
        return answer.status, orjson.dumps(answer.body), extra
