"""Logging set-up: one `dictConfig`, JSON lines or readable text.

Modules log with `logging.getLogger(__name__)`, a fixed event name as the
message and the ids as `extra` fields. The request id of the current request
is added to every line from a context variable.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import itertools
import logging
import logging.config
import secrets
import sys
from typing import Any

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

# Request ids: a random prefix per process and a counter, cheaper than uuid4.
_ID_PREFIX = secrets.token_hex(4)
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """Return an id unique to this request across processes and restarts."""
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


# Attributes every LogRecord has; anything else came in through `extra`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn repeats its message with terminal colours
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    current = request_id.get()
    if current is not None:
        fields.setdefault("request_id", current)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=repr).decode()


class TextFormatter(logging.Formatter):
    """A readable line: time, level, event, then key=value fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v!r}" for k, v in _fields(record).items())
        line = (
            f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} "
            f"{record.name}: {record.getMessage()} {fields}"
        ).rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record.

    Test runners swap standard error per test; a handler that kept the stream
    it was created with would write to a closed file afterwards.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str = "info", log_format: str = "text") -> None:
    """Send the `app` loggers and uvicorn's to standard error."""
    formatter = "json" if log_format == "json" else "text"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "json": {"()": JsonFormatter},
                "text": {"()": TextFormatter},
            },
            "handlers": {
                "stderr": {
                    "()": StderrHandler,
                    "formatter": formatter,
                }
            },
            "loggers": {
                "app": {"handlers": ["stderr"], "level": level.upper()},
                "uvicorn": {"handlers": ["stderr"], "level": "INFO"},
                "uvicorn.access": {"level": "WARNING"},
            },
        }
    )
