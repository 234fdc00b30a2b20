"""The append-only event history: its table, and the one function that appends to it.

Every event has an actor; nothing here updates or deletes. It sits in the foundation because
every domain records events (state changes, approvals, reloads, guard changes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, String, Text, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, SessionTransaction, mapped_column

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
) -> None:
    """Append one event; it commits with the change it describes.

    The rows wait in the session and go in as one multi-row insert just before the commit
    (or before a statement on the events table, which then sees them): a transaction that
    decides many executions at once writes its events in one statement, not one each.
    """
    row = event_row(
        kind=kind, entity=entity, actor=actor, reason=reason, execution_id=execution_id,
        step_run_id=step_run_id, step_id=step_id, from_state=from_state, to_state=to_state,
        source_addr=source_addr, data=data)
    if session.in_nested_transaction():
        # A savepoint may roll back alone: its events must go with it, as ORM rows do.
        session.add(Event(**row))
        return
    session.sync_session.info.setdefault(_PENDING, []).append(row)


_PENDING = "runbookd.pending_events"


def _write_pending(session: Session) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.execute(insert(Event.__table__), rows)


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    _write_pending(session)


@event.listens_for(Session, "do_orm_execute")
def _write_before_reading(state: ORMExecuteState) -> None:
    """Read-your-writes: a statement on the events table sees the events recorded before it,
    and ids keep the order events were recorded in."""
    if _PENDING not in state.session.info:
        return
    statement = state.statement
    if state.bind_mapper is Event.__mapper__ or getattr(statement, "table", None) is \
            Event.__table__:
        _write_pending(state.session)


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    """Rolled back, the events go with the change they describe."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
