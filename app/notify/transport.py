"""POST JSON through the allow-listed client and classify what went wrong, for every sender."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.notify.errors import DeliveryError, retry_after_seconds
from app.outbound import HostNotAllowed, OutboundHttp

# httpx is imported where it is used: start-up imports this module and need not load httpx
# (about 1.5 MiB) before the first notification is sent (see app/outbound.py).
if TYPE_CHECKING:
    import httpx

# Worth another try: the receiver was busy, down or rate-limiting.
RETRYABLE = frozenset({408, 425, 429})


def host_of(url: str) -> str:
    """`host[:port]` of a URL: messages never show a path, which may embed a token."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except Exception:
        return "an invalid URL"
    return f"{parsed.host}:{parsed.port}" if parsed.port else str(parsed.host)


async def post_json(http: OutboundHttp, url: str, payload: Any, *, service: str,
                    headers: Mapping[str, str] | None = None) -> httpx.Response:
    """POST `payload`; transport errors and a refused host become DeliveryError."""
    import httpx

    try:
        return await http.request("POST", url, json=payload, headers=dict(headers or {}))
    except HostNotAllowed as exc:
        raise DeliveryError(f"{service}: host {exc.host!r} is not on the HTTP allow-list "
                            "(RUNBOOKD_HTTP_ALLOWLIST)", retryable=False) from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{service}: could not reach {host_of(url)} "
                            f"({type(exc).__name__})", retryable=True) from None


def failure(response: httpx.Response, *, service: str, url: str, detail: str) -> DeliveryError:
    """A DeliveryError for an unexpected status: 408/425/429 and 5xx are retryable."""
    status = response.status_code
    retryable = status in RETRYABLE or status >= 500
    return DeliveryError(
        f"{service}: {host_of(url)} answered {status}" + (f": {detail}" if detail else ""),
        retryable=retryable, status=status,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


def short_text(response: httpx.Response, limit: int = 300) -> str:
    """The start of a response body, for error messages."""
    text = response.text.strip()
    return text if len(text) <= limit else text[:limit] + "..."
