"""Turn each source's body into one shape: `Envelope` of `NormalizedAlert`s. Pure functions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from app.intake.models import ACKNOWLEDGED, FIRING, RESOLVED
from app.intake.schemas import AlertmanagerWebhook, GrafanaWebhook, PagerDutyWebhook

# PagerDuty event types that change an incident's status; the others are stored only.
PAGERDUTY_STATUS = {
    "incident.triggered": FIRING,
    "incident.reopened": FIRING,
    "incident.acknowledged": ACKNOWLEDGED,
    "incident.resolved": RESOLVED,
}

_GO_ZERO_YEAR = 1  # Go's zero time, 0001-01-01T00:00:00Z, means "no end"


def storable(value: Any) -> Any:
    """Replace NUL characters, which PostgreSQL cannot store in text, by U+FFFD.

    Refusing such an alert would be worse: Alertmanager resends the whole group every
    group_interval, so one bad label would keep the whole group out forever.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which cost
# several microseconds a request on the intake's hot path. Nothing mutates these.
@dataclass(slots=True, kw_only=True)
class NormalizedAlert:
    source: str
    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    # When the current status began: orders deliveries that arrive out of order.
    status_at: dt.datetime
    generator_url: str | None
    # What the sender sent for this alert. Dumped only when the alert is written: most
    # deliveries are redeliveries, and dumping each of their alerts cost a tenth of a request.
    original: BaseModel

    @property
    def key(self) -> tuple[str, str, dt.datetime]:
        return (self.source, self.fingerprint, self.starts_at)

    @property
    def raw(self) -> dict[str, Any]:
        return self.original.model_dump(mode="json")


@dataclass(slots=True, kw_only=True)
class Envelope:
    """One accepted webhook request, ready to be stored."""

    source: str
    received_at: dt.datetime
    alerts: tuple[NormalizedAlert, ...]
    delivery_key: str | None = None
    group_key: str | None = None
    receiver: str | None = None
    event_type: str | None = None
    remote_addr: str | None = None
    truncated_alerts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # A part of a big delivery, which the writer stores in chunks (writer.py): the whole
    # delivery's alert count, and its delivery row once the first part has stored it.
    alerts_total: int | None = None
    delivery_id: int | None = None


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _end(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.year <= _GO_ZERO_YEAR:
        return None
    return _utc(value)


def from_alertmanager(
    body: AlertmanagerWebhook | GrafanaWebhook, *, source: str, received_at: dt.datetime,
    remote_addr: str | None = None,
) -> Envelope:
    """Alertmanager and Grafana bodies: one alert per entry of `alerts[]`."""
    alerts = []
    for item in body.alerts:
        starts_at = _utc(item.startsAt)
        ends_at = _end(item.endsAt)
        resolved = item.status == RESOLVED
        alerts.append(NormalizedAlert(
            source=source,
            fingerprint=item.fingerprint,
            status=item.status,
            labels=item.labels,
            annotations=item.annotations,
            starts_at=starts_at,
            ends_at=ends_at,
            status_at=(ends_at or received_at) if resolved else starts_at,
            generator_url=item.generatorURL or None,
            original=item,
        ))
    return Envelope(
        source=source, received_at=received_at, alerts=tuple(alerts), group_key=body.groupKey,
        receiver=body.receiver, truncated_alerts=body.truncatedAlerts, remote_addr=remote_addr,
        event_type=body.status,
    )


def from_pagerduty(
    body: PagerDutyWebhook, *, received_at: dt.datetime, webhook_id: str | None,
    remote_addr: str | None = None,
) -> Envelope:
    """A V3 webhook event. Only incident status events become alerts."""
    event = body.event
    status = PAGERDUTY_STATUS.get(event.event_type)
    alerts: tuple[NormalizedAlert, ...] = ()
    incident = event.data
    if status is not None and isinstance(incident.get("id"), str) and incident["id"]:
        alerts = (_pagerduty_alert(event.event_type, status, incident, _utc(event.occurred_at),
                                   original=body),)
    return Envelope(
        source="pagerduty", received_at=received_at, alerts=alerts,
        delivery_key=webhook_id or event.id, event_type=event.event_type,
        remote_addr=remote_addr,
    )


def _pagerduty_alert(
    event_type: str, status: str, incident: dict[str, Any], occurred_at: dt.datetime, *,
    original: BaseModel,
) -> NormalizedAlert:
    service = incident.get("service") if isinstance(incident.get("service"), dict) else {}
    priority = incident.get("priority") if isinstance(incident.get("priority"), dict) else {}
    labels = {
        "alertname": str(incident.get("title") or "PagerDuty incident")[:255],
        "incident_id": str(incident["id"]),
        "incident_number": str(incident.get("number", "")),
        "incident_key": str(incident.get("incident_key") or ""),
        "service": str(service.get("summary") or ""),
        "service_id": str(service.get("id") or ""),
        "urgency": str(incident.get("urgency") or ""),
        "priority": str(priority.get("summary") or ""),
    }
    annotations = {
        "title": str(incident.get("title") or ""),
        "html_url": str(incident.get("html_url") or ""),
        "event_type": event_type,
    }
    created = incident.get("created_at")
    try:
        starts_at = _utc(dt.datetime.fromisoformat(created)) if created else occurred_at
    except (TypeError, ValueError):
        starts_at = occurred_at
    return NormalizedAlert(
        source="pagerduty", fingerprint=str(incident["id"])[:128], status=status,
        labels={k: v for k, v in labels.items() if v}, annotations=annotations,
        starts_at=starts_at, ends_at=occurred_at if status == RESOLVED else None,
        status_at=occurred_at, generator_url=annotations["html_url"] or None,
        original=original,
    )
