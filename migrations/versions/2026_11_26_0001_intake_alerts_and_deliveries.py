"""intake alerts and deliveries

Revision ID: 0001
Revises:
Create Date: 2026-11-26 06:13:30.599499
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("starts_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ends_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("status_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("alertname", sa.String(length=255), nullable=True),
        sa.Column("labels", app.db.Json, nullable=False),
        sa.Column("annotations", app.db.Json, nullable=False),
        sa.Column("generator_url", sa.Text(), nullable=True),
        sa.Column("raw", app.db.Json, nullable=True),
        sa.Column("received_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("last_delivery_id", app.db.BigId, nullable=True),
        sa.Column("match_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint(
            "source",
            "fingerprint",
            "starts_at",
            name=op.f("uq_alerts_source_fingerprint_starts_at"),
        ),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_alertname"), ["alertname"], unique=False)
        batch_op.create_index("ix_alerts_received", ["received_at", "id"], unique=False)
        batch_op.create_index("ix_alerts_status_received", ["status", "received_at"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("received_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("delivery_key", sa.String(length=255), nullable=True),
        sa.Column("group_key", sa.Text(), nullable=True),
        sa.Column("receiver", sa.String(length=255), nullable=True),
        sa.Column("event_type", sa.String(length=64), nullable=True),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("alerts_total", sa.Integer(), nullable=False),
        sa.Column("alerts_new", sa.Integer(), nullable=False),
        sa.Column("alerts_changed", sa.Integer(), nullable=False),
        sa.Column("alerts_duplicate", sa.Integer(), nullable=False),
        sa.Column("truncated_alerts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "source", "delivery_key", name=op.f("uq_deliveries_source_delivery_key")
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_received", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_received")

    op.drop_table("deliveries")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_status_received")
        batch_op.drop_index("ix_alerts_received")
        batch_op.drop_index(batch_op.f("ix_alerts_alertname"))

    op.drop_table("alerts")
