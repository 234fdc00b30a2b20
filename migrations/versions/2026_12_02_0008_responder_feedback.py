"""responder feedback on ended executions

One row per (execution, identity): helped, partly or did_not_help, with a bounded note. A
second verdict from the same identity updates the row; the events keep each one given.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("execution_id", app.db.BigId, nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"], ["executions.id"],
            name=op.f("fk_feedback_execution_id_executions"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("execution_id", "identity",
                            name=op.f("uq_feedback_execution_id_identity")),
    )


def downgrade() -> None:
    op.drop_table("feedback")
