"""PagerDuty Events API v2: build an event and send it (`POST /v2/enqueue`, answered 202).

429 and 5xx are retryable; 400 means the event itself is wrong and is never retried. The
routing key travels only in the body, and no message here ever contains it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from app.notify.transport import failure, post_json, short_text
from app.outbound import OutboundHttp

SERVICE = "PagerDuty"
EventAction = Literal["trigger", "acknowledge", "resolve"]
Severity = Literal["critical", "error", "warning", "info"]
SEVERITIES = ("critical", "error", "warning", "info")
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255


def build_event(
    action: EventAction, *, routing_key: str, dedup_key: str, summary: str | None = None,
    source: str | None = None, severity: Severity | None = None,
    custom_details: Mapping[str, Any] | None = None,
    links: Sequence[Mapping[str, str]] | None = None, component: str | None = None,
    group: str | None = None, class_: str | None = None, client_url: str | None = None,
) -> dict[str, Any]:
    """An Events API v2 event; a trigger needs `summary`, `source` and `severity`."""
    if not dedup_key or len(dedup_key) > DEDUP_KEY_MAX:
        raise ValueError(f"dedup_key must be 1 to {DEDUP_KEY_MAX} characters")
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                             "dedup_key": dedup_key}
    if action != "trigger":
        return event
    if not summary or not source or severity not in SEVERITIES:
        raise ValueError("a trigger event needs a summary, a source and a severity "
                         f"({', '.join(SEVERITIES)})")
    payload: dict[str, Any] = {
        "summary": summary if len(summary) <= SUMMARY_MAX else summary[: SUMMARY_MAX - 1] + "…",
        "source": source, "severity": severity,
    }
    for key, value in (("component", component), ("group", group), ("class", class_)):
        if value:
            payload[key] = value
    if custom_details:
        payload["custom_details"] = dict(custom_details)
    event["payload"] = payload
    event["client"] = "runbookd"
    if client_url:
        event["client_url"] = client_url
    if links:
        event["links"] = [{"href": link["href"], "text": link.get("text", link["href"])}
                          for link in links]
    return event


async def send_event(http: OutboundHttp, url: str, event: Mapping[str, Any]) -> str:
    """Enqueue `event`; returns the dedup key PagerDuty answered with, or DeliveryError."""
    response = await post_json(http, url, event, service=SERVICE)
    if response.status_code == 202:
        try:
            return str(response.json().get("dedup_key") or event["dedup_key"])
        except ValueError:
            return str(event["dedup_key"])
    raise failure(response, service=SERVICE, url=url, detail=_errors(response))


def _errors(response: Any) -> str:
    # A 400 lists what is wrong with the event under `errors`.
    try:
        body = response.json()
    except ValueError:
        return short_text(response)
    if isinstance(body, dict):
        parts = [str(body.get("message") or "")] + [str(e) for e in body.get("errors") or []]
        return "; ".join(p for p in parts if p)
    return short_text(response)
