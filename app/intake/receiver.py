"""From an HTTP request to a committed delivery: authenticate, bound, parse, normalise, store.

The checks run cheapest first, and none of them reads more of the body than the limit.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TypeVar

from fastapi import Request, Response
from pydantic import BaseModel, ValidationError

from app import metrics
from app.db import utcnow
from app.errors import (
    BadRequest,
    Invalid,
    PayloadTooLarge,
    RunbookdError,
    UnsupportedMediaType,
    describe_validation_errors,
)
from app.intake.auth import WebhookAuth
from app.intake.models import ALERT_STATUSES, DUPLICATE_DELIVERY, STORED
from app.intake.normalize import Envelope, from_alertmanager, from_pagerduty, storable
from app.intake.schemas import (
    AlertmanagerWebhook,
    GrafanaWebhook,
    IngestCounts,
    IngestSummary,
    PagerDutyWebhook,
)
from app.intake.writer import GroupCommitWriter

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger(__name__)

# What the metrics count a request as whose client left before its body was in (nginx's code).
CLIENT_GONE = 499


class _ClientGone(Exception):
    """The client disconnected before the whole body arrived: no one is left to answer."""


class WebhookReceiver:
    """Handles the webhook of each source; shared by the three routes."""

    def __init__(self, *, auth: WebhookAuth, writer: GroupCommitWriter, max_body_bytes: int):
        self.auth = auth
        self.writer = writer
        self.max_body_bytes = max_body_bytes
        self._requests = {
            (s, c): metrics.webhook_requests.labels(s, str(c))
            for s in metrics.SOURCES for c in (200, 400, 401, 413, 415, 422, 500, 503)
        }
        self._durations = {s: metrics.webhook_duration.labels(s) for s in metrics.SOURCES}
        self._alerts = {(s, st): metrics.alerts_received.labels(s, st)
                        for s in metrics.SOURCES for st in ALERT_STATUSES}

    async def receive(self, request: Request, source: str) -> Response:
        """Store one webhook request and return its summary; errors carry their HTTP status."""
        started = time.perf_counter()
        code = 500
        try:
            envelope = await self._envelope(request, source)
            result = await self.writer.submit(envelope)
            code = 200
        except RunbookdError as exc:
            code = exc.status_code
            raise
        except _ClientGone:
            code = CLIENT_GONE
            return Response(status_code=CLIENT_GONE)  # never sent: the connection is gone
        finally:
            counter = self._requests.get((source, code)) or metrics.webhook_requests.labels(
                source, str(code))
            counter.inc()
            self._durations[source].observe(time.perf_counter() - started)
        # One increment per status, not per alert: each takes the counter's lock.
        statuses: dict[str, int] = {}
        for alert in envelope.alerts:
            statuses[alert.status] = statuses.get(alert.status, 0) + 1
        for status, count in statuses.items():
            self._alerts[source, status].inc(count)
        summary = IngestSummary(
            status=DUPLICATE_DELIVERY if result.duplicate_delivery else STORED,
            delivery_id=result.delivery_id,
            alerts=IngestCounts(received=result.received, new=result.new,
                                changed=result.changed, duplicate=result.duplicate),
            truncated_alerts=result.truncated_alerts,
        )
        # Serialised here: returned as a model, FastAPI would validate it again first.
        return Response(summary.model_dump_json(), media_type="application/json")

    async def _envelope(self, request: Request, source: str) -> Envelope:
        """Authenticate, bound, parse and normalise; the checks run cheapest first."""
        headers = request.headers
        if source == "alertmanager" or (source == "grafana" and self.auth.grafana is None):
            self.auth.check_credentials(headers.get("authorization"))
        _check_content_type(headers.get("content-type"))
        body = await self._read_body(request, source)
        remote = request.client.host if request.client else None
        received_at = utcnow()
        envelope: Envelope
        if source == "pagerduty":
            self.auth.check_pagerduty(body, headers.get("x-pagerduty-signature"))
            pd = _parse(PagerDutyWebhook, body)
            envelope = from_pagerduty(pd, received_at=received_at, remote_addr=remote,
                                      webhook_id=headers.get("x-webhook-id"))
        elif source == "grafana":
            ts_header = self.auth.grafana_timestamp_header
            self.auth.check_grafana(body, headers.get("x-grafana-alerting-signature"),
                                    headers.get(ts_header) if ts_header else None)
            envelope = from_alertmanager(_parse(GrafanaWebhook, body), source=source,
                                         received_at=received_at, remote_addr=remote)
        else:
            envelope = from_alertmanager(_parse(AlertmanagerWebhook, body), source=source,
                                         received_at=received_at, remote_addr=remote)
        return envelope

    async def _read_body(self, request: Request, source: str) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise BadRequest("Content-Length is not a number") from None
            if length > self.max_body_bytes:
                raise PayloadTooLarge(self._too_large())
        # The ASGI messages themselves, as Request.stream() reads them, without its async
        # generator: the body usually arrives in one message, and this is the hot path.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                # A sender that gave up (or a proxy that cut it): one line, not a traceback.
                log.warning("%s webhook: the client disconnected after %d bytes of the body; "
                            "nothing was stored", source, size)
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(self._too_large())
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self) -> str:
        return (f"body is over the limit of {self.max_body_bytes} bytes "
                "(RUNBOOKD_MAX_BODY_BYTES); lower max_alerts in the sender")


def _check_content_type(value: str | None) -> None:
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {media or 'none'}"
        )


def _parse(model: type[M], body: bytes) -> M:
    try:
        parsed = model.model_validate_json(body)
        if b"\\u0000" in body:  # a JSON-escaped NUL somewhere: make every string storable
            parsed = model.model_validate(storable(parsed.model_dump()))
        return parsed
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest(f"malformed JSON: {errors[0]['msg']}") from None
        details = describe_validation_errors(list(errors))  # type: ignore[arg-type]
        fields = ", ".join(sorted({d["field"] for d in details})[:5])
        raise Invalid(f"the body does not match the {model.__name__} schema: check {fields}",
                      details=details[:20]) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
