"""Executions, their step runs, approvals, guards and the append-only event history.

Status columns are written only by `app.engine.transitions` (invariant 5).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigId, Json, UTCDateTime
from app.engine import states

# The partial unique index below enforces the per-target lock in the database, so it holds
# across replicas. Its states are the active ones, in the order the migration wrote them.
_ACTIVE_SQL = "status IN ({})".format(", ".join(
    f"'{state}'" for state in states.EXECUTION_STATES if state in states.ACTIVE_EXECUTION))


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        Index("ix_executions_created", "created_at", "id"),
        # Orders a set of ids found elsewhere (a label's executions) without reading the rows.
        Index("ix_executions_id_created", "id", "created_at"),
        # Drills are 1 in 100: the list filter reads them newest first from here. The
        # condition is written as the filter renders `dry_run.is_(True)` on each database.
        Index("ix_executions_drills", "created_at", "id",
              sqlite_where=text("dry_run IS 1"), postgresql_where=text("dry_run IS true")),
        Index("ix_executions_status_created", "status", "created_at", "id"),
        Index("ix_executions_runbook_created", "runbook_id", "created_at", "id"),
        Index("ix_executions_target_created", "target", "created_at", "id"),
        Index("ix_executions_claim", "status", "wake_at"),
        Index("ix_executions_rate", "runbook_id", "target", "started_at"),
        Index(
            "uq_executions_active_target", "runbook_id", "target", unique=True,
            sqlite_where=text(_ACTIVE_SQL), postgresql_where=text(_ACTIVE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    runbook_id: Mapped[str] = mapped_column(String(64))
    runbook_version: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(Json)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    trigger: Mapped[str] = mapped_column(String(16))  # alert | manual | rollback
    # The execution this one was started from: a rollback started by hand.
    parent_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="SET NULL"), nullable=True, index=True)
    started_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # When the first alert began firing and when the last one resolved: time to restore.
    alert_fired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    alerts_resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The step the executor is on; None before the first and after the last.
    cursor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A pending execution is not runnable before this time (retry backoff, timers).
    wake_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ExecutionAlert(Base):
    """The alerts behind an execution: the one that started it and any that joined it."""

    __tablename__ = "execution_alerts"
    # Covering: an alert's executions without reading the link rows (the label filter).
    __table_args__ = (Index("ix_execution_alerts_alert_id", "alert_id", "execution_id"),)

    execution_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True)
    alert_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True)
    attached_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    role: Mapped[str] = mapped_column(String(16))  # trigger | joined


class StepRun(Base):
    __tablename__ = "step_runs"
    __table_args__ = (
        UniqueConstraint("execution_id", "step_id", "kind"),
        Index("ix_step_runs_escalation", "status", "next_escalation_at"),
        Index("ix_step_runs_rate", "rate_key", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="step")  # step | rollback
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(128))
    risky: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotent: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)
    # sha256 of the action, its rendered parameters and its plan; approvals are bound to it.
    step_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The concrete change a risky step will make, resolved by the action's read-only plan()
    # before it waits: {"summary": one human line, "resolved": the values it will use}.
    plan: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    awaiting_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    next_escalation_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    approval_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The budget a rate-limited step spends when it starts (real runs only): steps of any
    # runbook with the same key share it.
    rate_key: Mapped[str | None] = mapped_column(String(512), nullable=True)

    @property
    def ref(self) -> str:
        """How people and URLs name this run: the step id, or `<step>.rollback`."""
        return self.step_id if self.kind == "step" else f"{self.step_id}.{self.kind}"


class Approval(Base):
    """One decision by one identity on one rendered step (bound by its hash)."""

    __tablename__ = "approvals"
    # One standing decision per identity and step hash; a later decision voids the earlier
    # one (both stay recorded), so the uniqueness covers only decisions not voided.
    __table_args__ = (
        Index("uq_approvals_standing", "step_run_id", "identity", "step_hash", unique=True,
              sqlite_where=text("voided_at IS NULL"),
              postgresql_where=text("voided_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="CASCADE"), index=True)
    step_run_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("step_runs.id", ondelete="CASCADE"), index=True)
    identity: Mapped[str] = mapped_column(String(64), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    comment: Mapped[str] = mapped_column(Text, default="")
    step_hash: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))  # api | slack | link | web | cli
    source_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    void_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Guard(Base):
    """A switch that holds work: `global` (the kill switch) or `runbook:<id>`."""

    __tablename__ = "guards"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    engaged: Mapped[bool] = mapped_column(Boolean, default=False)
    kind: Mapped[str] = mapped_column(String(16), default="manual")  # manual | breaker
    reason: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(128))


class ApprovalLink(Base):
    """A signed, single-use approval link; the token carries this row's id."""

    __tablename__ = "approval_links"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="CASCADE"), index=True)
    step_run_id: Mapped[int] = mapped_column(BigId, ForeignKey("step_runs.id",
                                                               ondelete="CASCADE"))
    step_hash: Mapped[str] = mapped_column(String(64))
    intended: Mapped[str] = mapped_column(String(128))  # an identity, or role:<role>
    # Who made the link: an identity, or system:<who> for the links in notifications.
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
