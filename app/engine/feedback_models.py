"""Responder feedback: did the runbook help the people who took part in an execution?"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigId, UTCDateTime

HELPED = "helped"
PARTLY = "partly"
DID_NOT_HELP = "did_not_help"
VERDICTS = (HELPED, PARTLY, DID_NOT_HELP)
NOTE_MAX = 1000


class Feedback(Base):
    """One person's verdict on one ended execution; a later one updates it in place (the
    events keep every verdict given)."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("execution_id", "identity"),
        # The stats' window and the runbook page's notes read this table alone: a join to
        # executions walked every execution in the window (1.7 s on SQLite for a year of 1M).
        Index("ix_feedback_window", "execution_created_at", "runbook_id", "verdict",
              "execution_id"),
        Index("ix_feedback_runbook_updated", "runbook_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="CASCADE"))
    # Copied from the execution, which never changes them: its runbook, and its created_at,
    # the stats' window.
    runbook_id: Mapped[str] = mapped_column(String(64))
    execution_created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    identity: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    channel: Mapped[str] = mapped_column(String(16))  # api | web | slack | cli
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
