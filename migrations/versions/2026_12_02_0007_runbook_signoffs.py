"""change sign-off: who loaded each runbook version, who signed it off, review reminders

A runbook version whose risky steps changed runs as a drill until a reviewer signs it off;
the reviewer may not be whoever loaded it, so the loader is stored with the version.
`review_notices` holds one row per (runbook, due time): the overdue-review reminder is
inserted on-conflict-do-nothing, so one replica sends it once per period.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runbook_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("loaded_by", sa.String(length=128), nullable=True))
    op.create_table(
        "runbook_signoffs",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("runbook_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("signed_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runbook_signoffs")),
    )
    with op.batch_alter_table("runbook_signoffs", schema=None) as batch_op:
        batch_op.create_index("ix_runbook_signoffs_version", ["runbook_id", "version"],
                              unique=False)
        batch_op.create_index("ix_runbook_signoffs_latest", ["runbook_id", "signed_at"],
                              unique=False)
    op.create_table(
        "review_notices",
        sa.Column("runbook_id", sa.String(length=64), nullable=False),
        sa.Column("due_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("notified_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("runbook_id", "due_at", name=op.f("pk_review_notices")),
    )


def downgrade() -> None:
    op.drop_table("review_notices")
    with op.batch_alter_table("runbook_signoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_runbook_signoffs_latest")
        batch_op.drop_index("ix_runbook_signoffs_version")
    op.drop_table("runbook_signoffs")
    with op.batch_alter_table("runbook_versions", schema=None) as batch_op:
        batch_op.drop_column("loaded_by")
