"""storm brakes and their verdicts on executions

A storm brake holds new executions when more distinct targets than its limit started within
its window (a shared cause, not many broken models). Its state is a row per scope, so every
replica sees it; each execution it saw has a verdict, and the count of distinct targets is a
query over the admitted ones.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storm_brakes",
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("limit_targets", sa.Integer(), nullable=False),
        sa.Column("within_seconds", sa.Integer(), nullable=False),
        sa.Column("targets", app.db.Json, nullable=False),
        sa.Column("engaged_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("released_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_storm_brakes")),
    )
    op.create_table(
        "brake_verdicts",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("execution_id", app.db.BigId, nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("decided_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"], ["executions.id"],
            name=op.f("fk_brake_verdicts_execution_id_executions"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_brake_verdicts")),
        sa.UniqueConstraint("scope", "execution_id",
                            name=op.f("uq_brake_verdicts_scope_execution_id")),
    )
    with op.batch_alter_table("brake_verdicts", schema=None) as batch_op:
        batch_op.create_index("ix_brake_verdicts_window", ["scope", "verdict", "decided_at"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_brake_verdicts_execution_id"), ["execution_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("brake_verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_brake_verdicts_execution_id"))
        batch_op.drop_index("ix_brake_verdicts_window")
    op.drop_table("brake_verdicts")
    op.drop_table("storm_brakes")
