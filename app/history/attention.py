"""What needs a person now: the steps an identity may decide, the executions that need a
human, and why a waiting execution waits (the executions list's reason column)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import ApprovalSpec, Runbook
from app.engine import states
from app.engine.approvals import decision_blocker
from app.engine.models import Execution, StepRun
from app.engine.schemas import ExecutionOut
from app.errors import NotFound
from app.identity import Identity

RunbookOf = Callable[[AsyncSession, str, str], Awaitable[Runbook]]


@dataclass(frozen=True)
class Waiting:
    """One execution waiting on a person: a step to decide, or a human choice to make."""

    execution: ExecutionOut
    why: str
    step_ref: str | None = None
    step_title: str | None = None
    since: dt.datetime | None = None


async def needs_you(session: AsyncSession, me: Identity, *, runbook_of: RunbookOf,
                    limit: int = 50) -> list[Waiting]:
    """Steps awaiting an approval `me` may give, oldest wait first, then the executions in
    needs_attention when `me` may resolve them (a responder or above)."""
    out: list[Waiting] = []
    rows = (await session.execute(
        select(StepRun, Execution).join(Execution, Execution.id == StepRun.execution_id)
        .where(Execution.status == states.AWAITING_APPROVAL,
               StepRun.status == states.STEP_AWAITING_APPROVAL)
        .order_by(StepRun.awaiting_since, StepRun.id).limit(limit * 4)
    )).all()
    for run, execution in rows:
        spec = await _spec(session, runbook_of, execution, run.step_id)
        if spec is None or decision_blocker(me, started_by=execution.started_by, spec=spec):
            continue
        out.append(Waiting(ExecutionOut.of(execution), "awaits your approval", run.ref,
                           run.title, run.awaiting_since))
        if len(out) >= limit:
            return out
    if me.has_role("responder"):
        stuck = (await session.execute(
            select(Execution).where(Execution.status == states.NEEDS_ATTENTION)
            .order_by(Execution.updated_at, Execution.id).limit(limit - len(out))
        )).scalars()
        out += [Waiting(ExecutionOut.of(e), e.status_reason or "needs a human decision",
                        since=e.updated_at) for e in stuck]
    return out


async def _spec(session: AsyncSession, runbook_of: RunbookOf, execution: Execution,
                step_id: str) -> ApprovalSpec | None:
    try:
        runbook = await runbook_of(session, execution.runbook_id, execution.runbook_version)
        return runbook.step(step_id).approvals or ApprovalSpec()
    except (NotFound, KeyError):
        return None  # a version never stored: nobody can be told they may decide it


async def wake_times(session: AsyncSession, ids: list[int]) -> dict[int, dt.datetime]:
    """When each of these waiting executions may run again (a rate limit's window)."""
    if not ids:
        return {}
    rows = await session.execute(select(Execution.id, Execution.wake_at).where(
        Execution.id.in_(ids), Execution.wake_at.is_not(None)))
    return {i: w for i, w in rows}
