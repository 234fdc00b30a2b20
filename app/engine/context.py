"""What a step's templates can see, loaded from the database for one execution."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import EscalationTier, Runbook, Step
from app.catalog.templating import make_context
from app.engine.models import Execution, StepRun
from app.engine.transitions import step_runs_of

FIFTEEN_MINUTES = dt.timedelta(minutes=15)


async def step_context(session: AsyncSession, execution: Execution, *,
                       runs: Iterable[StepRun] | None = None) -> dict[str, Any]:
    """Params, earlier steps' outputs and the execution, for an action's templates; `runs`,
    the execution's step runs when the caller has them loaded already.

    No alert: its labels reach an action only through the typed params (invariant 6).
    """
    if runs is None:
        runs = await step_runs_of(session, execution.id)
    steps = {
        r.step_id: {"status": r.status, "summary": r.summary or "", "output": r.output or {}}
        for r in runs if r.kind == "step"
    }
    return make_context(
        params=execution.params,
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


def failure_channels(runbook: Runbook) -> list[str]:
    """Who hears that an execution failed, needs attention or was held by a limit: the first
    tier, and whoever the runbook's `on_failure_notify` names."""
    return list(dict.fromkeys([*approval_channels(runbook), *runbook.on_failure_notify]))
