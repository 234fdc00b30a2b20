"""The outbox table: notifications written in the transaction of the change that causes them."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigId, Json, UTCDateTime

# The outbox's delivery states, and the moves between them; `outbox.move` is their one writer.
PENDING: Final = "pending"
SENT: Final = "sent"
FAILED: Final = "failed"
OUTBOX_STATES: Final = (PENDING, SENT, FAILED)
OUTBOX_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    # Pending stays pending between attempts; it ends sent, or failed for good.
    PENDING: frozenset({PENDING, SENT, FAILED}),
    SENT: frozenset(),
    FAILED: frozenset(),
}


class Notification(Base):
    """The outbox: written in the transaction of the state change that causes it."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    execution_id: Mapped[int | None] = mapped_column(BigId, nullable=True, index=True)
    step_run_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    # Sent with the delivery so that a resend after a crash is recognised downstream.
    dedup_key: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)  # OUTBOX_STATES
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
