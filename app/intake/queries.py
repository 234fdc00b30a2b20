"""Read-only queries over stored alerts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import json_key_equals
from app.intake.models import LABEL_VALUE_INDEXED, Alert, AlertLabel
from app.paging import keyset_page


class AlertOut(BaseModel):
    id: int
    source: str
    fingerprint: str
    status: str
    alertname: str | None
    labels: dict[str, Any]
    annotations: dict[str, Any]
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    generator_url: str | None
    received_at: dt.datetime
    updated_at: dt.datetime
    match_note: str | None

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        return cls.model_validate(alert, from_attributes=True)


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None


async def list_alerts(
    session: AsyncSession, *, status: str | None = None, source: str | None = None,
    labels: list[tuple[str, str]] = (), since: dt.datetime | None = None,  # type: ignore[assignment]
    cursor: str | None = None, limit: int = 50,
) -> AlertPage:
    """Alerts newest first, one keyset page at a time."""
    query = select(Alert)
    if status:
        query = query.where(Alert.status == status)
    if source:
        query = query.where(Alert.source == source)
    if since:
        since = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
        query = query.where(Alert.received_at >= since)
    dialect = session.bind.dialect.name
    for name, value in labels:
        if len(value) < LABEL_VALUE_INDEXED:
            query = query.where(Alert.id.in_(select(AlertLabel.alert_id).where(
                AlertLabel.name == name, AlertLabel.value == value)))
        else:
            query = query.where(json_key_equals(Alert.labels, name, value, dialect=dialect))
    rows, next_cursor = await keyset_page(session, query, at=Alert.received_at, row_id=Alert.id,
                                          cursor=cursor, limit=limit)
    return AlertPage(items=[AlertOut.of(a) for a in rows], next_cursor=next_cursor)
