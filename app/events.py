"""The append-only event history: its table, and the one function that appends to it.

Every event has an actor; nothing here updates or deletes. It sits in the foundation because
every domain records events (state changes, approvals, reloads, guard changes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigId, Json, UTCDateTime, utcnow


class Event(Base):
    """The append-only history: every state change, approval, guard change, reload and
    manual action. Nothing updates or deletes a row here, except retention pruning."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_execution", "execution_id", "id"),
        Index("ix_events_created", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(48))
    entity: Mapped[str] = mapped_column(String(16))
    execution_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    step_run_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    step_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    from_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    source_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)


def event_row(
    *, kind: str, entity: str, actor: str, reason: str = "",
    execution_id: int | None = None, step_run_id: int | None = None,
    step_id: str | None = None, from_state: str | None = None, to_state: str | None = None,
    source_addr: str | None = None, data: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """One event's columns, for a caller that inserts many in one statement."""
    return {
        "created_at": at or utcnow(), "kind": kind, "entity": entity, "actor": actor[:128],
        "reason": reason, "execution_id": execution_id, "step_run_id": step_run_id,
        "step_id": step_id, "from_state": from_state, "to_state": to_state,
        "source_addr": source_addr, "data": data,
    }


def record_event(
    session: AsyncSession, *, kind: str, entity: str, actor: str, reason: str = "",
    execution_id: int | None = None, step_run_id: int | None = None,
    step_id: str | None = None, from_state: str | None = None, to_state: str | None = None,
    source_addr: str | None = None, data: dict[str, Any] | None = None,
) -> Event:
    """Add one event row to the session; it commits with the change it describes."""
    event = Event(**event_row(
        kind=kind, entity=entity, actor=actor, reason=reason, execution_id=execution_id,
        step_run_id=step_run_id, step_id=step_id, from_state=from_state, to_state=to_state,
        source_addr=source_addr, data=data))
    session.add(event)
    return event
