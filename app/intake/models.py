"""Stored alerts and webhook deliveries."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final, Literal

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigId, Json, UTCDateTime

# The prefix of a label value kept in alert_labels; longer values are filtered on the JSON.
LABEL_VALUE_INDEXED = 255

# An alert's status (alerts.status), as its source says it. Every status string in the intake
# comes from here. Literal[] takes values, not names, so the types below spell them again.
FIRING: Final = "firing"
ACKNOWLEDGED: Final = "acknowledged"  # PagerDuty only
RESOLVED: Final = "resolved"
ALERT_STATUSES = (FIRING, ACKNOWLEDGED, RESOLVED)
AlertStatus = Literal["firing", "acknowledged", "resolved"]
SentStatus = Literal["firing", "resolved"]  # what Alertmanager and Grafana send

# What a delivery makes of each of its alerts (deliveries.alerts_new, _changed, _duplicate).
NEW: Final = "new"
CHANGED: Final = "changed"
DUPLICATE: Final = "duplicate"
Decision = Literal["new", "changed", "duplicate"]
ChangeKind = Literal["new", "changed"]  # the decisions that write the alert

# The match note of a new alert that no runbook handles (alerts.match_note).
NO_RUNBOOK: Final = "no runbook matched"

# What became of a webhook request: stored, or a delivery id seen before (nothing written).
STORED: Final = "stored"
DUPLICATE_DELIVERY: Final = "duplicate_delivery"
DeliveryStatus = Literal["stored", "duplicate_delivery"]


class Alert(Base):
    """One alert occurrence: a source's fingerprint plus the time it started firing.

    Alertmanager identifies an occurrence by fingerprint and startsAt; a resolve is a status
    change of the same row, never a new one.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("source", "fingerprint", "starts_at"),
        Index("ix_alerts_received", "received_at", "id"),
        Index("ix_alerts_status_received", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(128))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # When the source says the current status began; orders out-of-order deliveries.
    status_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    alertname: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    labels: Mapped[dict[str, Any]] = mapped_column(Json)
    annotations: Mapped[dict[str, Any]] = mapped_column(Json)
    generator_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    raw: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_delivery_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    # What the mapper made of it: "no runbook matched", "execution 12", a validation error.
    match_note: Mapped[str | None] = mapped_column(Text, nullable=True)


class Delivery(Base):
    """One webhook request that was accepted, with what it changed."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("source", "delivery_key"),
        Index("ix_deliveries_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # PagerDuty's X-Webhook-Id or event id; Alertmanager sends none.
    delivery_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    group_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    receiver: Mapped[str | None] = mapped_column(String(255), nullable=True)
    event_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    alerts_total: Mapped[int] = mapped_column(Integer, default=0)
    alerts_new: Mapped[int] = mapped_column(Integer, default=0)
    alerts_changed: Mapped[int] = mapped_column(Integer, default=0)
    alerts_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    truncated_alerts: Mapped[int] = mapped_column(Integer, default=0)


class AlertLabel(Base):
    """One label of an alert, so history can filter on any label through an index.

    Labels are part of an alert's identity and never change, so each row is written once,
    with the alert. Values longer than the indexed prefix are matched on the alert's JSON.
    """

    __tablename__ = "alert_labels"
    __table_args__ = (Index("ix_alert_labels_name_value", "name", "value", "alert_id"),)

    alert_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(LABEL_VALUE_INDEXED))
