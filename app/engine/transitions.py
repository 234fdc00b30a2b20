"""The one writer of execution and step-run state (invariant 5).

Each call locks the row, checks the transition table in `states.py`, applies the change and
appends an event, all in the caller's transaction. Nothing else assigns `status`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import after_commit, utcnow
from app.engine import states
from app.engine.models import Execution, StepRun
from app.errors import Conflict, LeaseLost, NotFound
from app.events import record_event


async def lock_execution(session: AsyncSession, execution_id: int) -> Execution:
    """Load an execution with a row lock (FOR UPDATE on PostgreSQL)."""
    row = (await session.execute(
        select(Execution).where(Execution.id == execution_id).with_for_update()
        .execution_options(populate_existing=True)
    )).scalar_one_or_none()
    if row is None:
        raise NotFound(f"execution {execution_id} does not exist")
    return row


async def lock_step(session: AsyncSession, step_run_id: int) -> StepRun:
    row = (await session.execute(
        select(StepRun).where(StepRun.id == step_run_id).with_for_update()
        .execution_options(populate_existing=True)
    )).scalar_one_or_none()
    if row is None:
        raise NotFound(f"step run {step_run_id} does not exist")
    return row


async def transition_execution(
    session: AsyncSession, execution: int | Execution, to_state: str, *, actor: str,
    reason: str = "", data: dict[str, Any] | None = None, source_addr: str | None = None,
    lease_owner: str | None = None, **fields: Any,
) -> Execution:
    """Move an execution to `to_state`, or raise Conflict naming its current state.

    With `lease_owner`, the change applies only while that worker still holds the lease:
    a worker that lost its lease to another replica must not write over it.
    """
    execution_id = execution if isinstance(execution, int) else execution.id
    row = await lock_execution(session, execution_id)
    if lease_owner is not None and row.lease_owner != lease_owner:
        raise LeaseLost(f"execution {execution_id} is leased by {row.lease_owner}")
    from_state = row.status
    if not states.execution_can(from_state, to_state):
        raise Conflict(
            f"execution {execution_id} is {from_state}; it cannot become {to_state}",
            current_state=from_state,
        )
    now = utcnow()
    row.status = to_state
    row.updated_at = now
    if reason:
        row.status_reason = reason
    for name, value in fields.items():
        setattr(row, name, value)
    if to_state in states.FINAL_EXECUTION:
        row.finished_at = now
        row.lease_owner = None
        row.lease_expires_at = None
        row.wake_at = None
        runbook = row.runbook_id
        after_commit(session, lambda: metrics.executions_total.labels(runbook, to_state).inc())
    record_event(
        session, kind="execution.state", entity="execution", actor=actor, reason=reason,
        execution_id=execution_id, from_state=from_state, to_state=to_state,
        source_addr=source_addr, data=data,
    )
    return row


async def transition_step(
    session: AsyncSession, step: int | StepRun, to_state: str, *, actor: str, reason: str = "",
    data: dict[str, Any] | None = None, source_addr: str | None = None, **fields: Any,
) -> StepRun:
    """Move a step run to `to_state`, or raise Conflict naming its current state."""
    step_run_id = step if isinstance(step, int) else step.id
    row = await lock_step(session, step_run_id)
    from_state = row.status
    if not states.step_can(from_state, to_state):
        raise Conflict(
            f"step {row.step_id} of execution {row.execution_id} is {from_state}; "
            f"it cannot become {to_state}",
            current_state=from_state,
        )
    row.status = to_state
    for name, value in fields.items():
        setattr(row, name, value)
    record_event(
        session, kind="step.state", entity="step", actor=actor, reason=reason,
        execution_id=row.execution_id, step_run_id=row.id, step_id=row.step_id,
        from_state=from_state, to_state=to_state, source_addr=source_addr, data=data,
    )
    return row
