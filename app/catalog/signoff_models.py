"""Change sign-off records, and the review reminders sent once per review period."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigId, UTCDateTime

# How a version came to be signed off.
REVIEWED = "review"  # a reviewer (or an admin) signed it off
AUTOMATIC = "auto"  # its change touched no risky step
INITIAL = "initial"  # the catalog was seen for the first time: it is the baseline
SIGNOFF_KINDS = (REVIEWED, AUTOMATIC, INITIAL)


class RunbookSignoff(Base):
    """Who signed off which version of a runbook, when, and why. A version is signed off
    once it has one; a later review of the same version (its review was due) adds another."""

    __tablename__ = "runbook_signoffs"
    __table_args__ = (
        Index("ix_runbook_signoffs_version", "runbook_id", "version"),
        Index("ix_runbook_signoffs_latest", "runbook_id", "signed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    runbook_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    reviewer: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # SIGNOFF_KINDS
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    comment: Mapped[str] = mapped_column(Text, default="")


class ReviewNotice(Base):
    """The owner was told a review is overdue: one row per (runbook, due time), inserted
    on-conflict-do-nothing, so one replica sends it and only once per period."""

    __tablename__ = "review_notices"

    runbook_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    notified_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
