"""The storm brake's tables: one row per brake scope, and the brake's verdict on each
execution it saw (the count of distinct targets is a query over these verdicts)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigId, Json, UTCDateTime

# What the brake decided about one execution in one scope.
ADMITTED = "admitted"  # it started, and its target counts in the window
HELD = "held"  # the brake was engaged (or engaged on it): it waits for a human
RELEASED = "released"  # a human let it through; it does not count towards the next storm
ABORTED = "aborted"  # a human cancelled it with the others the brake held
VERDICTS = (ADMITTED, HELD, RELEASED, ABORTED)


class StormBrakeRow(Base):
    """A brake scope: `global` (every runbook) or `runbook:<id>`; engaged or not."""

    __tablename__ = "storm_brakes"

    scope: Mapped[str] = mapped_column(String(128), primary_key=True)
    engaged: Mapped[bool] = mapped_column(Boolean, default=False)
    # The limit that engaged it, and the distinct targets it saw within the window then.
    limit_targets: Mapped[int] = mapped_column(Integer)
    within_seconds: Mapped[int] = mapped_column(Integer)
    targets: Mapped[list[str]] = mapped_column(Json)
    engaged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The last release or abort: the count of distinct targets starts afresh from it.
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(128))


class BrakeVerdict(Base):
    """The brake's verdict on one execution in one scope."""

    __tablename__ = "brake_verdicts"
    __table_args__ = (
        UniqueConstraint("scope", "execution_id"),
        Index("ix_brake_verdicts_window", "scope", "verdict", "decided_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(128))
    execution_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("executions.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(512))
    verdict: Mapped[str] = mapped_column(String(16))
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
