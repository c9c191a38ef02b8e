"""Reading request bodies and parameters with limits and precise errors."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request

from app.errors import BadRequest, PayloadTooLarge

# C0 control characters and DEL. Postgres rejects NUL in text, and none of
# our fields is multi-line text, so no field accepts any of them.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
# Yuan with at most two decimals, and commas only between groups of three.
_YUAN = re.compile(r"[0-9]{1,3}(,[0-9]{3})*(\.[0-9]{1,2})?|[0-9]+(\.[0-9]{1,2})?")


def is_ascii_digits(text: str) -> bool:
    """Return whether `text` is one or more ASCII digits 0-9.

    `str.isdigit()` alone also accepts digits such as "²" or Arabic-Indic
    digits, which `int()` then rejects or reads as a number.
    """
    return text.isascii() and text.isdigit()


def yuan_to_fen(text: str, max_fen: int) -> int | None:
    """Return a plain amount of yuan such as '10,800.50' in fen, or None.

    Only ASCII digits count. Exponents, underscores, signs and commas
    outside groups of three are rejected, and so is an amount over `max_fen`.
    """
    if not _YUAN.fullmatch(text):
        return None
    fen = int(Decimal(text.replace(",", "")) * 100)
    return fen if fen <= max_fen else None


def control_character(text: str) -> str | None:
    """Return the first C0 control character or DEL in `text`, or None."""
    found = _CONTROL_CHARACTER.search(text)
    return found.group() if found else None


def check_plain_text(value: str, name: str) -> None:
    """Raise `BadRequest` naming the field when `value` has a control character."""
    character = control_character(value)
    if character is not None:
        raise BadRequest(
            f"The field {name!r} must not contain control characters, "
            f"found {character!r}.",
            field=name,
        )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Return the body, refusing one over `max_bytes` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not is_ascii_digits(declared):
            raise BadRequest("The Content-Length header is not a number.")
        if int(declared) > max_bytes:
            raise PayloadTooLarge(f"The body must be at most {max_bytes} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The body must be at most {max_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """Return the body as a JSON object or raise `BadRequest` saying why not."""
    return parse_json_object(await read_body(request, max_bytes))


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Return `body` parsed as a JSON object or raise `BadRequest` saying why not."""
    if not body:
        raise BadRequest("The body is empty; send a JSON object.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.")
    return data


def text_field(data: dict[str, Any], name: str, max_length: int = 200) -> str:
    """Return a required, non-empty string field or raise `BadRequest`."""
    value = data.get(name)
    if value is None:
        raise BadRequest(f"The field {name!r} is missing.", field=name)
    if not isinstance(value, str):
        raise BadRequest(f"The field {name!r} must be a string.", field=name)
    value = value.strip()
    if not value:
        raise BadRequest(f"The field {name!r} is empty.", field=name)
    if len(value) > max_length:
        raise BadRequest(
            f"The field {name!r} must have at most {max_length} characters.",
            field=name,
        )
    check_plain_text(value, name)
    return value


def path_int(request: Request, name: str) -> int:
    """Return an integer path parameter or raise `BadRequest`."""
    raw = request.path_params[name]
    if isinstance(raw, int):
        return raw
    if not is_ascii_digits(str(raw)) or len(str(raw)) > 18:
        raise BadRequest(f"{name} must be a positive whole number, got {raw!r}.")
    return int(raw)
