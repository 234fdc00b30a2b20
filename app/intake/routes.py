"""Webhook endpoints and the alerts API. Thin: the receiver and queries do the work."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response

from app.db import SessionDep
from app.identity import Identity
from app.identity.deps import require
from app.intake.models import AlertStatus
from app.intake.queries import AlertPage, list_alerts
from app.intake.schemas import (
    AlertmanagerWebhook,
    GrafanaWebhook,
    IngestSummary,
    PagerDutyWebhook,
)
from app.paging import MAX_LIMIT, parse_label_filters

router = APIRouter()

_ERRORS = {
    400: {"description": "malformed JSON"},
    401: {"description": "bad credentials or signature"},
    413: {"description": "body over RUNBOOKD_MAX_BODY_BYTES"},
    415: {"description": "not application/json"},
    422: {"description": "the body does not match the schema; the field is named"},
    503: {"description": "database unavailable; retry after Retry-After seconds"},
}


WEBHOOK_MODELS = (AlertmanagerWebhook, GrafanaWebhook, PagerDutyWebhook)


def webhook_schemas() -> dict[str, Any]:
    """The webhook body schemas, for the OpenAPI components section."""
    out: dict[str, Any] = {}
    for model in WEBHOOK_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _body_doc(model: type) -> dict[str, Any]:
    # The body is read raw (for size limits and signatures), so it is documented by hand.
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    }}}


async def alertmanager_webhook(request: Request) -> Response:
    """Alertmanager's webhook receiver (version 4), with bearer or basic auth."""
    return await request.app.state.receiver.receive(request, "alertmanager")


async def grafana_webhook(request: Request) -> Response:
    """Grafana unified alerting's webhook contact point."""
    return await request.app.state.receiver.receive(request, "grafana")


async def pagerduty_webhook(request: Request) -> Response:
    """PagerDuty V3 webhook subscriptions, signed with X-PagerDuty-Signature."""
    return await request.app.state.receiver.receive(request, "pagerduty")


def install_webhooks(app: FastAPI) -> None:
    """Add the webhook routes to the app itself.

    Not through include_router: each router it includes adds frames to the request's
    coroutine chain, which every await suspends and resumes, and the webhooks are the hot
    path (benchmarks/RESULTS.md).
    """
    for path, endpoint, model in (
        ("/webhooks/alertmanager", alertmanager_webhook, AlertmanagerWebhook),
        ("/webhooks/grafana", grafana_webhook, GrafanaWebhook),
        ("/webhooks/pagerduty", pagerduty_webhook, PagerDutyWebhook),
    ):
        app.add_api_route(path, endpoint, methods=["POST"], response_model=IngestSummary,
                          responses=_ERRORS, openapi_extra=_body_doc(model), tags=["webhooks"])


@router.get("/api/v1/alerts", response_model=AlertPage, tags=["alerts"])
async def get_alerts(
    session: SessionDep,
    _: Annotated[Identity, Depends(require("viewer"))],
    status: AlertStatus | None = None,
    source: Literal["alertmanager", "grafana", "pagerduty"] | None = None,
    label: Annotated[list[str], Query(description="name=value, repeatable")] = [],  # noqa: B006
    since: dt.datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> AlertPage:
    """Stored alerts, newest first, with keyset pagination."""
    return await list_alerts(session, status=status, source=source,
                             labels=parse_label_filters(label), since=since, cursor=cursor,
                             limit=limit)
