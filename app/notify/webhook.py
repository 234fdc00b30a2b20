"""A generic JSON webhook: POST with an `Idempotency-Key`, so a receiver can drop a retry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.notify.transport import failure, post_json, short_text
from app.outbound import OutboundHttp

if TYPE_CHECKING:
    import httpx

SERVICE = "webhook"


async def send_webhook(http: OutboundHttp, url: str, payload: Any, *, idempotency_key: str,
                       headers: Mapping[str, str] | None = None) -> httpx.Response:
    """POST `payload` as JSON; any 2xx is success, else DeliveryError (retryable or not)."""
    sent_headers = {**(headers or {}), "Idempotency-Key": idempotency_key}
    response = await post_json(http, url, payload, service=SERVICE, headers=sent_headers)
    if not response.is_success:
        raise failure(response, service=SERVICE, url=url, detail=short_text(response))
    return response
