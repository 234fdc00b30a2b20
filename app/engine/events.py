"""Append to the event history. Every event has an actor; nothing here updates or deletes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.engine.models import Event


def record_event(
    session: AsyncSession, *, kind: str, entity: str, actor: str, reason: str = "",
    execution_id: int | None = None, step_run_id: int | None = None,
    step_id: str | None = None, from_state: str | None = None, to_state: str | None = None,
    source_addr: str | None = None, data: dict[str, Any] | None = None,
) -> Event:
    """Add one event row to the session; it commits with the change it describes."""
    event = Event(
        created_at=utcnow(), kind=kind, entity=entity, actor=actor[:128], reason=reason,
        execution_id=execution_id, step_run_id=step_run_id, step_id=step_id,
        from_state=from_state, to_state=to_state, source_addr=source_addr, data=data,
    )
    session.add(event)
    return event
