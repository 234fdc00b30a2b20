"""stats rollups, covering indexes for the history list

What the stats need of each ended execution, summed per runbook and per hour and per day of
its creation (counts by status, objectives met, log-bucketed histograms of the timings), so
that stats over a month or a year read rollup rows instead of every execution. Backfilled
here from the executions that have already ended.

Two covering indexes for the label filter of the history list: an alert's executions
(alert_id, execution_id), and the creation time of a set of executions (id, created_at); and
a partial index of the drills, newest first.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db
from app.engine.rollups import backfill

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stats_rollups",
        sa.Column("span", sa.String(length=1), nullable=False),
        sa.Column("start", app.db.UTCDateTime(), nullable=False),
        sa.Column("runbook_id", sa.String(length=64), nullable=False),
        sa.Column("runbook_version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("executions", sa.Integer(), nullable=False),
        sa.Column("needed_approval", sa.Integer(), nullable=False),
        sa.Column("diagnose_measured", sa.Integer(), nullable=False),
        sa.Column("diagnose_met", sa.Integer(), nullable=False),
        sa.Column("restore_measured", sa.Integer(), nullable=False),
        sa.Column("restore_met", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("span", "start", "runbook_id", "runbook_version", "status"),
    )
    op.create_table(
        "stats_histograms",
        sa.Column("span", sa.String(length=1), nullable=False),
        sa.Column("start", app.db.UTCDateTime(), nullable=False),
        sa.Column("runbook_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("span", "start", "runbook_id", "metric", "bucket"),
    )
    backfill(op.get_bind())
    op.create_index("ix_executions_id_created", "executions", ["id", "created_at"])
    op.create_index("ix_executions_drills", "executions", ["created_at", "id"],
                    sqlite_where=sa.text("dry_run IS 1"),
                    postgresql_where=sa.text("dry_run IS true"))
    op.drop_index("ix_execution_alerts_alert_id", table_name="execution_alerts")
    op.create_index("ix_execution_alerts_alert_id", "execution_alerts",
                    ["alert_id", "execution_id"])


def downgrade() -> None:
    op.drop_index("ix_execution_alerts_alert_id", table_name="execution_alerts")
    op.create_index("ix_execution_alerts_alert_id", "execution_alerts", ["alert_id"])
    op.drop_index("ix_executions_drills", table_name="executions")
    op.drop_index("ix_executions_id_created", table_name="executions")
    op.drop_table("stats_histograms")
    op.drop_table("stats_rollups")
