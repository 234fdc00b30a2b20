"""Stats rollups: what the stats need of each ended execution, summed per runbook and per hour
and per day of its creation, so that a month of stats reads hundreds of rows, not 100,000.

Written by `app/engine/rollups.py` in the transaction of the execution's final transition;
read by `app/history/rollups.py`. A row's `start` is the UTC hour (span "h"), day ("d"),
Monday-started week ("w") or calendar month ("m") that its executions were created in; the
primary keys lead with (span, start) so that a window is one range scan per span.

The counters have hour and day rows only: they are a few rows per runbook-day, and the newest
day a version has decides whose objectives apply. The histograms, about 75 rows per
runbook-day, also have week and month rows, so that a month reads a few week rows and a year
about a dozen month rows per runbook instead of every day's.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime

HOUR = "h"
DAY = "d"
WEEK = "w"
MONTH = "m"


class StatsRollup(Base):
    """Counts of ended executions by runbook, version and final status."""

    __tablename__ = "stats_rollups"

    span: Mapped[str] = mapped_column(String(1), primary_key=True)
    start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    runbook_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The version decides the objectives that "met" was measured against.
    runbook_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32), primary_key=True)
    executions: Mapped[int] = mapped_column(Integer)
    needed_approval: Mapped[int] = mapped_column(Integer)
    diagnose_measured: Mapped[int] = mapped_column(Integer)
    diagnose_met: Mapped[int] = mapped_column(Integer)
    restore_measured: Mapped[int] = mapped_column(Integer)
    restore_met: Mapped[int] = mapped_column(Integer)


class StatsHistogram(Base):
    """A log-bucketed histogram of one timing per runbook: how many values fell in each
    bucket and their sum (the bucket's mean stands for its values in percentiles)."""

    __tablename__ = "stats_histograms"

    span: Mapped[str] = mapped_column(String(1), primary_key=True)
    start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    runbook_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric: Mapped[str] = mapped_column(String(16), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Float)
