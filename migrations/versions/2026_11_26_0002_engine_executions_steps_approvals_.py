"""engine executions steps approvals events guards outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:22:58.275912
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("execution_id", app.db.BigId, nullable=True),
        sa.Column("step_run_id", app.db.BigId, nullable=True),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("source_addr", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("data", app.db.Json, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_created", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_events_execution", ["execution_id", "id"], unique=False)

    op.create_table(
        "executions",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("runbook_id", sa.String(length=64), nullable=False),
        sa.Column("runbook_version", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("params", app.db.Json, nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("started_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("started_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("alert_fired_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("alerts_resolved_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("cursor", sa.String(length=64), nullable=True),
        sa.Column("wake_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", app.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index("ix_executions_claim", ["status", "wake_at"], unique=False)
        batch_op.create_index("ix_executions_created", ["created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_executions_rate", ["runbook_id", "target", "started_at"], unique=False
        )
        batch_op.create_index(
            "ix_executions_runbook_created", ["runbook_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_executions_status_created", ["status", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_executions_target_created", ["target", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "uq_executions_active_target",
            ["runbook_id", "target"],
            unique=True,
            sqlite_where=sa.text(
                "status IN ('pending', 'running', 'awaiting_approval', 'paused', 'needs_attention')"
            ),
            postgresql_where=sa.text(
                "status IN ('pending', 'running', 'awaiting_approval', 'paused', 'needs_attention')"
            ),
        )

    op.create_table(
        "guards",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_guards")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("execution_id", app.db.BigId, nullable=True),
        sa.Column("step_run_id", app.db.BigId, nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column("payload", app.db.Json, nullable=False),
        sa.Column("dedup_key", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", app.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notifications_execution_id"), ["execution_id"], unique=False
        )

    op.create_table(
        "runbook_versions",
        sa.Column("runbook_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("content", app.db.Json, nullable=False),
        sa.Column("source_path", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("runbook_id", "version", name=op.f("pk_runbook_versions")),
    )
    op.create_table(
        "execution_alerts",
        sa.Column("execution_id", app.db.BigId, nullable=False),
        sa.Column("alert_id", app.db.BigId, nullable=False),
        sa.Column("attached_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_execution_alerts_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_execution_alerts_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", "alert_id", name=op.f("pk_execution_alerts")),
    )
    with op.batch_alter_table("execution_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_execution_alerts_alert_id"), ["alert_id"], unique=False
        )

    op.create_table(
        "step_runs",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("execution_id", app.db.BigId, nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("risky", sa.Boolean(), nullable=False),
        sa.Column("idempotent", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("params", app.db.Json, nullable=True),
        sa.Column("step_hash", sa.String(length=64), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("output", app.db.Json, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("started_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("awaiting_since", app.db.UTCDateTime(), nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("next_escalation_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("approval_expires_at", app.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_step_runs_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_runs")),
        sa.UniqueConstraint(
            "execution_id", "step_id", "kind", name=op.f("uq_step_runs_execution_id_step_id_kind")
        ),
    )
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_step_runs_escalation", ["status", "next_escalation_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_step_runs_execution_id"), ["execution_id"], unique=False
        )

    op.create_table(
        "approval_links",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("execution_id", app.db.BigId, nullable=False),
        sa.Column("step_run_id", app.db.BigId, nullable=False),
        sa.Column("step_hash", sa.String(length=64), nullable=False),
        sa.Column("intended", sa.String(length=128), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("used_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", app.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_approval_links_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_run_id"],
            ["step_runs.id"],
            name=op.f("fk_approval_links_step_run_id_step_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_links")),
    )
    with op.batch_alter_table("approval_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_approval_links_execution_id"), ["execution_id"], unique=False
        )

    op.create_table(
        "approvals",
        sa.Column("id", app.db.BigId, autoincrement=True, nullable=False),
        sa.Column("execution_id", app.db.BigId, nullable=False),
        sa.Column("step_run_id", app.db.BigId, nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("step_hash", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("source_addr", sa.String(length=64), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("voided_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_approvals_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_run_id"],
            ["step_runs.id"],
            name=op.f("fk_approvals_step_run_id_step_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint(
            "step_run_id",
            "identity",
            "step_hash",
            name=op.f("uq_approvals_step_run_id_identity_step_hash"),
        ),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_approvals_execution_id"), ["execution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_approvals_identity"), ["identity"], unique=False)
        batch_op.create_index(batch_op.f("ix_approvals_step_run_id"), ["step_run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approvals_step_run_id"))
        batch_op.drop_index(batch_op.f("ix_approvals_identity"))
        batch_op.drop_index(batch_op.f("ix_approvals_execution_id"))

    op.drop_table("approvals")
    with op.batch_alter_table("approval_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_links_execution_id"))

    op.drop_table("approval_links")
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_step_runs_execution_id"))
        batch_op.drop_index("ix_step_runs_escalation")

    op.drop_table("step_runs")
    with op.batch_alter_table("execution_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_execution_alerts_alert_id"))

    op.drop_table("execution_alerts")
    op.drop_table("runbook_versions")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_execution_id"))
        batch_op.drop_index("ix_notifications_due")

    op.drop_table("notifications")
    op.drop_table("guards")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_executions_active_target",
            sqlite_where=sa.text(
                "status IN ('pending', 'running', 'awaiting_approval', 'paused', 'needs_attention')"
            ),
            postgresql_where=sa.text(
                "status IN ('pending', 'running', 'awaiting_approval', 'paused', 'needs_attention')"
            ),
        )
        batch_op.drop_index("ix_executions_target_created")
        batch_op.drop_index("ix_executions_status_created")
        batch_op.drop_index("ix_executions_runbook_created")
        batch_op.drop_index("ix_executions_rate")
        batch_op.drop_index("ix_executions_created")
        batch_op.drop_index("ix_executions_claim")

    op.drop_table("executions")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_execution")
        batch_op.drop_index("ix_events_created")

    op.drop_table("events")
