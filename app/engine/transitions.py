"""The one writer of execution and step-run state (invariant 5).

Each call locks the row, checks the transition table in `states.py`, applies the change and
appends an event, all in the caller's transaction. Nothing else assigns `status`.

A row is locked once per transaction: `lock_execution` and `lock_step` remember what they
locked in the session, and a transition given a row locked earlier in the same transaction
uses it as it is rather than asking the database again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app import metrics
from app.db import after_commit, utcnow
from app.engine import states
from app.engine.models import Execution, StepRun
from app.engine.rollups import record_final
from app.errors import Conflict, LeaseLost, NotFound
from app.events import record_event

_LOCKED = "runbookd.locked_rows"


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: object) -> None:
    """Row locks end with the transaction, and so does the memory of them."""
    if getattr(transaction, "parent", None) is None:
        session.info.pop(_LOCKED, None)


def remember_locked(session: AsyncSession, row: Execution | StepRun) -> None:
    """Note that `row` is locked in the session's current transaction."""
    session.info.setdefault(_LOCKED, set()).add((type(row).__name__, row.id))


def _is_locked(session: AsyncSession, row: Execution | StepRun) -> bool:
    return (type(row).__name__, row.id) in session.info.get(_LOCKED, ())


async def lock_execution(session: AsyncSession, execution_id: int) -> Execution:
    """Load an execution with a row lock (FOR UPDATE on PostgreSQL)."""
    row = (await session.execute(
        select(Execution).where(Execution.id == execution_id).with_for_update()
        .execution_options(populate_existing=True)
    )).scalar_one_or_none()
    if row is None:
        raise NotFound(f"execution {execution_id} does not exist")
    remember_locked(session, row)
    return row


async def lock_step(session: AsyncSession, step_run_id: int) -> StepRun:
    """Load a step run with a row lock (FOR UPDATE on PostgreSQL)."""
    row = (await session.execute(
        select(StepRun).where(StepRun.id == step_run_id).with_for_update()
        .execution_options(populate_existing=True)
    )).scalar_one_or_none()
    if row is None:
        raise NotFound(f"step run {step_run_id} does not exist")
    remember_locked(session, row)
    return row


async def _locked_execution(session: AsyncSession, execution: int | Execution) -> Execution:
    if isinstance(execution, Execution) and _is_locked(session, execution):
        return execution
    return await lock_execution(session, execution if isinstance(execution, int)
                                else execution.id)


async def _locked_step(session: AsyncSession, step: int | StepRun) -> StepRun:
    if isinstance(step, StepRun) and _is_locked(session, step):
        return step
    return await lock_step(session, step if isinstance(step, int) else step.id)


async def transition_execution(
    session: AsyncSession, execution: int | Execution, to_state: str, *, actor: str,
    reason: str = "", data: dict[str, Any] | None = None, source_addr: str | None = None,
    lease_owner: str | None = None, **fields: Any,
) -> Execution:
    """Move an execution to `to_state`, or raise Conflict naming its current state.

    With `lease_owner`, the change applies only while that worker still holds the lease:
    a worker that lost its lease to another replica must not write over it.
    """
    row = await _locked_execution(session, execution)
    execution_id = row.id
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
        await record_final(session, row)  # the stats rollups, in this same transaction
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
    row = await _locked_step(session, step)
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
