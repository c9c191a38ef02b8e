"""Validation of a grab request: its Idempotency-Key and its JSON body."""

from __future__ import annotations

import re

from app.errors import BadRequest
from app.inputs import parse_json_object

MAX_RANKED = 5
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,100}")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def check_idempotency_key(key: str | None) -> str:
    """Return the key or raise `BadRequest` saying what is wrong with it."""
    if key is None:
        raise BadRequest(
            "The Idempotency-Key header is missing; send a new random value per "
            "click and the same value when retrying."
        )
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest(
            "The Idempotency-Key header must be 1 to 100 letters, digits, '.', "
            "'_', ':' or '-'."
        )
    return key


def requested_labels(body: bytes) -> list[str]:
    """Return the labels of `{"space": ...}` or `{"spaces": [...]}`, in order."""
    data = parse_json_object(body)
    if ("space" in data) == ("spaces" in data):
        raise BadRequest(
            'Send either "space" with one label or "spaces" with a ranked list.'
        )
    if "space" in data:
        labels = [data["space"]]
    else:
        labels = data["spaces"]
        if not isinstance(labels, list) or not 1 <= len(labels) <= MAX_RANKED:
            raise BadRequest(
                f'"spaces" must be a list of 1 to {MAX_RANKED} labels.', field="spaces"
            )
    for label in labels:
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise BadRequest(
                f"{label!r} is not a space label such as 'E-108'.", field="spaces"
            )
    if len(set(labels)) != len(labels):
        raise BadRequest("The list names a space twice.", field="spaces")
    return labels
