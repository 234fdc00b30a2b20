"""stats histograms get week and month rows

Stats over a month read about 75 histogram rows per runbook-day (day rows, and hour rows at
the window's edges), and a year every day's: 440,000 rows at 1M executions. Week and month
rows let a month read a few week rows and a year a dozen month rows per runbook. No schema
change: new values of `span` in stats_histograms ("w", "m"), summed here from the day rows
(which hold every ended execution's timings); the final transition writes them from now on.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

from alembic import op

from app.engine.rollups import histograms_from_days

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    histograms_from_days(op.get_bind())


def downgrade() -> None:
    op.execute("DELETE FROM stats_histograms WHERE span IN ('w', 'm')")
