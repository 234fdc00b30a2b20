"""What a step's templates can see, loaded from the database for one execution."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import EscalationTier, Runbook, Step
from app.catalog.templating import make_context
from app.engine.models import Execution, ExecutionAlert, StepRun
from app.intake.models import Alert

FIFTEEN_MINUTES = dt.timedelta(minutes=15)


async def trigger_alert(session: AsyncSession, execution_id: int) -> Alert | None:
    """The alert that started an execution (None for one started by hand)."""
    return (await session.execute(
        select(Alert).join(ExecutionAlert, ExecutionAlert.alert_id == Alert.id)
        .where(ExecutionAlert.execution_id == execution_id)
        .order_by(ExecutionAlert.attached_at, Alert.id).limit(1)
    )).scalar_one_or_none()


def alert_view(alert: Alert | None) -> dict[str, Any]:
    if alert is None:
        return {}
    return {
        "source": alert.source, "fingerprint": alert.fingerprint, "status": alert.status,
        "labels": alert.labels, "annotations": alert.annotations,
        "starts_at": alert.starts_at.isoformat(), "generator_url": alert.generator_url,
    }


async def step_context(session: AsyncSession, execution: Execution) -> dict[str, Any]:
    """Params, the trigger alert, earlier steps' outputs and the execution, for templates."""
    runs = (await session.execute(
        select(StepRun).where(StepRun.execution_id == execution.id, StepRun.kind == "step")
    )).scalars().all()
    steps = {
        r.step_id: {"status": r.status, "summary": r.summary or "", "output": r.output or {}}
        for r in runs
    }
    return make_context(
        params=execution.params,
        alert=alert_view(await trigger_alert(session, execution.id)),
        steps=steps,
        execution={"id": execution.id, "runbook": execution.runbook_id,
                   "target": execution.target, "dry_run": execution.dry_run},
    )


def approval_deadlines(
    runbook: Runbook, step: Step, since: dt.datetime, default_timeout: dt.timedelta,
) -> tuple[dt.datetime, dt.datetime]:
    """When the approval expires, and when the first escalation (or the expiry) is due.

    Tiers fire at `since + after`; the step expires after its approval timeout, which by
    default leaves fifteen minutes after the last tier.
    """
    tiers: list[EscalationTier] = runbook.escalation
    timeout = step.approval_timeout or (
        max(t.after for t in tiers) + FIFTEEN_MINUTES if tiers else default_timeout)
    expires = since + timeout
    first = since + tiers[0].after if tiers else expires
    return expires, min(first, expires)


def approval_channels(runbook: Runbook) -> list[str]:
    """Who is asked first: the first escalation tier's channels."""
    return list(runbook.escalation[0].notify) if runbook.escalation else []
