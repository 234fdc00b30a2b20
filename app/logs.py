"""Log lines as text for people, or as one JSON object per line for Loki and Elasticsearch
(`RUNBOOKD_LOG_FORMAT=json`), carrying what the line is about where it is known: the
execution, the step, the alert fingerprint and the HTTP request.

The context rides in contextvars, set where the work starts (a request, an execution's
driver, a step's action), so every line logged underneath carries it without each call site
passing it along.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

execution_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "execution_id", default=None)
step_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("step_id", default=None)
alert_fingerprint: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "alert_fingerprint", default=None)
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None)
_CONTEXT = (("execution_id", execution_id), ("step_id", step_id),
            ("alert_fingerprint", alert_fingerprint), ("request_id", request_id))
# A caller's X-Request-ID is kept only when it is short and plain: it lands in every line.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@contextlib.contextmanager
def context(**values: Any) -> Iterator[None]:
    """Set some of the context for the lines logged inside the block."""
    tokens = [(var, var.set(values[name])) for name, var in _CONTEXT if name in values]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context, and the error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in _CONTEXT:
            value = var.get()
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(*, level: str | None = None, fmt: str | None = None) -> None:
    """Log to stderr at `level` (RUNBOOKD_LOG_LEVEL, default INFO) in `fmt`
    (RUNBOOKD_LOG_FORMAT: text or json); ValueError names what to fix."""
    level = (level or os.environ.get("RUNBOOKD_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("RUNBOOKD_LOG_FORMAT") or "text").lower()
    if fmt not in FORMATS:
        raise ValueError(f"RUNBOOKD_LOG_FORMAT={fmt!r}: use one of {', '.join(FORMATS)}")
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"RUNBOOKD_LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING or ERROR")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level, handlers=[handler], force=True)


class RequestIds:
    """Pure ASGI middleware: each request gets an id (the caller's X-Request-ID when it is
    plain, else a new one), set for its log lines and echoed in the answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                      if k == b"x-request-id"), "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        with context(request_id=rid):
            await self.app(scope, receive, send_with_id)
