"""step plans, link creators, standing approvals, sign-in sessions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 17:02:19.436330
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_sessions")),
    )
    with op.batch_alter_table("sign_in_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_sign_in_sessions_expires", ["expires_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sign_in_sessions_token_digest"), ["token_digest"], unique=False
        )

    with op.batch_alter_table("approval_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_by", sa.String(length=128), nullable=True))

    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_approvals_step_run_id_identity_step_hash"), type_="unique"
        )
        batch_op.create_index(
            "uq_approvals_standing",
            ["step_run_id", "identity", "step_hash"],
            unique=True,
            sqlite_where=sa.text("voided_at IS NULL"),
            postgresql_where=sa.text("voided_at IS NULL"),
        )

    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan", app.db.Json, nullable=True))


def downgrade() -> None:
    # The old constraint counted voided decisions too: keep only the newest of each kind.
    op.execute(
        "DELETE FROM approvals WHERE voided_at IS NOT NULL AND EXISTS (SELECT 1 FROM approvals"
        " AS later WHERE later.step_run_id = approvals.step_run_id AND later.identity ="
        " approvals.identity AND later.step_hash = approvals.step_hash AND later.id <> approvals.id"
        " AND later.voided_at IS NULL)"
    )
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_column("plan")

    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_approvals_standing",
            sqlite_where=sa.text("voided_at IS NULL"),
            postgresql_where=sa.text("voided_at IS NULL"),
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_approvals_step_run_id_identity_step_hash"),
            ["step_run_id", "identity", "step_hash"],
        )

    with op.batch_alter_table("approval_links", schema=None) as batch_op:
        batch_op.drop_column("created_by")

    with op.batch_alter_table("sign_in_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sign_in_sessions_token_digest"))
        batch_op.drop_index("ix_sign_in_sessions_expires")

    op.drop_table("sign_in_sessions")
