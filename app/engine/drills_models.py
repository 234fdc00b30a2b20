"""The drill runs table: one row per drill of a runbook, scheduled or started by hand.

The unique (runbook, due time) is what makes one replica run each due drill: every scheduler
inserts the row with on-conflict-do-nothing and only the one whose insert took starts it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigId, Json, UTCDateTime

# A drill run's phase (its execution has the state): the execution runs; it ended and the
# verdicts are in; or it did not start (a drill of the runbook was still going).
RUNNING = "running"
FINISHED = "finished"
SKIPPED = "skipped"
PHASES = (RUNNING, FINISHED, SKIPPED)


class DrillRun(Base):
    __tablename__ = "drill_runs"
    __table_args__ = (
        UniqueConstraint("runbook_id", "due_at"),
        Index("ix_drill_runs_runbook_finished", "runbook_id", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    runbook_id: Mapped[str] = mapped_column(String(64))
    runbook_version: Mapped[str] = mapped_column(String(64))
    # The schedule's due time (a drill started by hand: when it was asked for).
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual
    started_by: Mapped[str] = mapped_column(String(128))  # a person, or scheduler:<worker>
    phase: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    execution_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="SET NULL"), nullable=True, index=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    problems: Mapped[int] = mapped_column(Integer, default=0)
    # [{"step": id, "title", "action", "kind": ran|planned|check, "ok": bool, "reason"}]
    verdicts: Mapped[list[dict[str, Any]]] = mapped_column(Json)
