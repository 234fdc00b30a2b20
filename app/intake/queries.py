"""Read-only queries over stored alerts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import json_key_equals
from app.intake.models import Alert
from app.querying import decode_cursor, encode_cursor


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
        query = query.where(json_key_equals(Alert.labels, name, value, dialect=dialect))
    if cursor:
        at, last_id = decode_cursor(cursor)
        query = query.where(tuple_(Alert.received_at, Alert.id) < tuple_(at, last_id))
    query = query.order_by(Alert.received_at.desc(), Alert.id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].received_at, rows[-1].id) if more and rows else None
    return AlertPage(items=[AlertOut.of(a) for a in rows], next_cursor=next_cursor)
