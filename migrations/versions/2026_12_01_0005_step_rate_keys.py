"""step rate keys, execution parents, rate-limited executions hold their target

A rate limit on a step, with a budget that runbooks may share; the execution a rollback
started by hand came from; and `rate_limited` joins the active states (it waits for its
window), so the per-target lock covers it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

_OLD_ACTIVE = ("status IN ('pending', 'running', 'awaiting_approval', 'paused', "
               "'needs_attention')")
_NEW_ACTIVE = ("status IN ('pending', 'running', 'awaiting_approval', 'paused', "
               "'needs_attention', 'rate_limited')")


def _active_target_index(where: str) -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("uq_executions_active_target")
        batch_op.create_index("uq_executions_active_target", ["runbook_id", "target"],
                              unique=True, sqlite_where=sa.text(where),
                              postgresql_where=sa.text(where))

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_key", sa.String(length=512), nullable=True))
        batch_op.create_index("ix_step_runs_rate", ["rate_key", "started_at"], unique=False)
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.BigInteger().with_variant(
            sa.Integer(), "sqlite"), nullable=True))
        batch_op.create_index(batch_op.f("ix_executions_parent_id"), ["parent_id"],
                              unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_executions_parent_id_executions"),
                                    "executions", ["parent_id"], ["id"], ondelete="SET NULL")
    _active_target_index(_NEW_ACTIVE)


def downgrade() -> None:
    _active_target_index(_OLD_ACTIVE)
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_executions_parent_id_executions"),
                                 type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_executions_parent_id"))
        batch_op.drop_column("parent_id")
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_step_runs_rate")
        batch_op.drop_column("rate_key")
