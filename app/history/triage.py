"""The last result of each triage check: the newest finished run of a step, among the
runbook's recent executions (the runbook page's decision tree shows it). Dry runs (drills)
are left out: what a check said in rehearsal is not what happened in production."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.engine.models import Execution, StepRun

# Enough executions to find every check that ran lately; bounded, so the page stays cheap
# however long the history is.
RECENT_EXECUTIONS = 50


@dataclass(frozen=True)
class LastRun:
    execution_id: int
    status: str
    summary: str | None
    finished_at: dt.datetime | None


async def last_runs(session: AsyncSession, runbook_id: str,
                    step_ids: list[str]) -> dict[str, LastRun]:
    """Step id to its newest finished run in the runbook's last executions."""
    if not step_ids:
        return {}
    recent = (select(Execution.id).where(Execution.runbook_id == runbook_id,
                                         Execution.dry_run.is_(False))
              .order_by(Execution.created_at.desc(), Execution.id.desc())
              .limit(RECENT_EXECUTIONS).scalar_subquery())
    rows = (await session.execute(
        select(StepRun).where(StepRun.execution_id.in_(recent), StepRun.kind == "step",
                              StepRun.step_id.in_(step_ids), StepRun.finished_at.is_not(None))
        .order_by(StepRun.finished_at.desc(), StepRun.id.desc())
    )).scalars()
    out: dict[str, LastRun] = {}
    for run in rows:
        out.setdefault(run.step_id, LastRun(run.execution_id, run.status,
                                            run.summary or run.error, run.finished_at))
    return out
