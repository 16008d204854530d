"""Structured JSON logs, one object per line, each tagged with the request it serves.

The standard library's logging does the routing; this module only formats. Nothing in
the server logs a request or response body, so secret values cannot reach a log line; and
while a task step runs, a :class:`~strongroom.server.redact.RedactingFilter` on the handler
scrubs every record with the step's redactor.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any

from .redact import RedactingFilter

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "strongroom_request_id", default=None
)

# Attributes every LogRecord has; anything else was passed through ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            # RedactingFilter formats (and redacts) the exception itself and clears exc_info
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    # While a task step runs, its redactor scrubs every record before it is formatted.
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    route_to_root(logging.getLogger("dbos"))
    # Python's warnings print plain text on stderr; as log records they are JSON too.
    logging.captureWarnings(True)
    # The request log below replaces uvicorn's access log (which knows no request id).
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel("WARNING")
    # httpx logs every request's full URL at INFO, and httpcore its hosts at DEBUG: a task
    # tool's URL can hold a value derived from a secret, which no redactor would know.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel("WARNING")


def route_to_root(logger: logging.Logger) -> None:
    """Send ``logger``'s records to the root handler (JSON, redacted) alone. The handler
    left on it does nothing, but is there: DBOS adds its plain-text console handler to
    its logger when it finds none, as it does the moment it is constructed, before any
    code of ours could run after it."""
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = True
