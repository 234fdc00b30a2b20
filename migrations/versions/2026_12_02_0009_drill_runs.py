"""drill runs

One row per drill of a runbook: scheduled (unique per runbook and due time, so that one
replica runs each due drill) or started by hand, with its execution, its problems count and
the verdict of each drilled step.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drill_runs",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("runbook_id", sa.String(length=64), nullable=False),
        sa.Column("runbook_version", sa.String(length=64), nullable=False),
        sa.Column("due_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("started_by", sa.String(length=128), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("execution_id", app.db.BigId, nullable=True),
        sa.Column("started_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("finished_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column("verdicts", app.db.Json, nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"], ["executions.id"],
            name=op.f("fk_drill_runs_execution_id_executions"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_runs")),
        sa.UniqueConstraint("runbook_id", "due_at", name=op.f("uq_drill_runs_runbook_id_due_at")),
    )
    with op.batch_alter_table("drill_runs", schema=None) as batch_op:
        batch_op.create_index("ix_drill_runs_runbook_finished", ["runbook_id", "finished_at"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_drill_runs_execution_id"), ["execution_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("drill_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drill_runs_execution_id"))
        batch_op.drop_index("ix_drill_runs_runbook_finished")
    op.drop_table("drill_runs")
