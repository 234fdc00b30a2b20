"""alert labels index table

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 07:12:14.097889
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_labels",
        sa.Column("alert_id", app.db.BigId, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_labels_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_id", "name", name=op.f("pk_alert_labels")),
    )
    with op.batch_alter_table("alert_labels", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alert_labels_name_value", ["name", "value", "alert_id"], unique=False
        )
    _backfill()


def downgrade() -> None:
    with op.batch_alter_table("alert_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_labels_name_value")

    op.drop_table("alert_labels")


def _backfill() -> None:
    """Index the labels of the alerts stored before this table existed."""
    conn = op.get_bind()
    alerts = sa.table("alerts", sa.column("id"), sa.column("labels", sa.JSON()))
    labels = sa.table("alert_labels", sa.column("alert_id"), sa.column("name"), sa.column("value"))
    rows = [
        {"alert_id": alert_id, "name": name[:255], "value": str(value)[:255]}
        for alert_id, alert_labels in conn.execute(sa.select(alerts.c.id, alerts.c.labels))
        for name, value in (alert_labels or {}).items()
    ]
    for start in range(0, len(rows), 5000):
        conn.execute(labels.insert(), rows[start : start + 5000])
