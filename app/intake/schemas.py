"""Webhook bodies of each source, as their senders really write them (see PROTOCOLS.md).

Every model accepts fields it does not know: Alertmanager and Grafana add fields in new
releases, and refusing them would make a sender retry a body that can never succeed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.intake.models import DeliveryStatus, SentStatus

Fingerprint = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class AlertmanagerAlert(_Open):
    status: SentStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: dt.datetime
    endsAt: dt.datetime | None = None
    generatorURL: str = ""
    fingerprint: Fingerprint


class AlertmanagerWebhook(_Open):
    """Alertmanager's webhook body, `version: "4"`."""

    version: str
    groupKey: str
    truncatedAlerts: int = Field(default=0, ge=0, le=2**31 - 1)
    status: SentStatus
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert]


class GrafanaAlert(AlertmanagerAlert):
    values: dict[str, Any] | None = None
    valueString: str | None = None
    silenceURL: str | None = None
    dashboardURL: str | None = None
    panelURL: str | None = None
    imageURL: str | None = None


class GrafanaWebhook(AlertmanagerWebhook):
    """Grafana unified alerting: Alertmanager's shape with `version: "1"` and a few extras."""

    orgId: int | None = None
    title: str | None = None
    state: str | None = None
    message: str | None = None
    alerts: list[GrafanaAlert]  # type: ignore[assignment]


class PagerDutyEvent(_Open):
    id: str = Field(min_length=1, max_length=255)
    event_type: str = Field(min_length=1, max_length=64)
    resource_type: str = ""
    occurred_at: dt.datetime
    agent: dict[str, Any] | None = None
    client: dict[str, Any] | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class PagerDutyWebhook(_Open):
    """A V3 webhook: one event per request."""

    event: PagerDutyEvent


class IngestCounts(BaseModel):
    received: int
    new: int
    changed: int
    duplicate: int


class IngestSummary(BaseModel):
    """The 200 answer to a webhook: what was stored."""

    status: DeliveryStatus
    delivery_id: int | None
    alerts: IngestCounts
    truncated_alerts: int = 0
