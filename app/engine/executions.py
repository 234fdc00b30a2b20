"""Cancel, resolve and roll back executions (starting them is starts.py). The caller owns the
transaction."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import Runbook, Step
from app.db import utcnow
from app.engine import states
from app.engine.models import Approval, Execution, ExecutionAlert, StepRun
from app.engine.runbooks import RunbookSource
from app.engine.transitions import (
    add_step_run,
    lock_execution,
    transition_execution,
    transition_step,
)
from app.errors import Conflict, NotFound
from app.events import record_event
from app.intake.models import RESOLVED, Alert


async def active_execution_for(
    session: AsyncSession, runbook_id: str, target: str,
) -> Execution | None:
    """The execution holding the per-target lock of (runbook, target), if any."""
    return (await session.execute(
        select(Execution).where(
            Execution.runbook_id == runbook_id, Execution.target == target,
            Execution.status.in_(states.ACTIVE_EXECUTION),
        )
    )).scalar_one_or_none()


async def insert_active(session: AsyncSession, execution: Execution) -> None:
    """Insert an active execution; IntegrityError when another holds its target's lock (the
    partial unique index), with the caller's transaction still usable."""
    if session.bind.dialect.name == "sqlite":
        # One writer: nothing can race between the caller's check and this insert.
        session.add(execution)
        await session.flush()
        return
    async with session.begin_nested():
        session.add(execution)
        await session.flush()


async def cancel_open_steps(session: AsyncSession, execution_id: int, *, actor: str,
                            reason: str) -> None:
    """Cancel the steps that have not started; a running step is left to finish."""
    steps = (await session.execute(
        select(StepRun).where(StepRun.execution_id == execution_id,
                              StepRun.status.in_(states.OPEN_STEP))
    )).scalars().all()
    for step in steps:
        await transition_step(session, step, states.STEP_CANCELLED, actor=actor, reason=reason,
                              next_escalation_at=None)


async def cancel_execution(
    session: AsyncSession, execution_id: int, *, actor: str, reason: str,
    source_addr: str | None = None,
) -> Execution:
    """Cancel an active execution: open steps are cancelled, a running one finishes."""
    execution = await lock_execution(session, execution_id)
    if execution.status not in states.ACTIVE_EXECUTION:
        raise Conflict(f"execution {execution_id} is {execution.status}; only an active "
                       "execution can be cancelled", current_state=execution.status)
    await cancel_open_steps(session, execution_id, actor=actor, reason=reason)
    return await transition_execution(session, execution, states.CANCELLED, actor=actor,
                                      reason=reason, source_addr=source_addr)


async def on_alert_resolved(
    session: AsyncSession, *, alert_id: int, runbook_of: RunbookSource,
    actor: str = "system:resolve",
) -> list[int]:
    """When every alert of an execution has resolved, cancel it unless the step it is at, or
    else its runbook, says `on_resolve: continue`. Returns the ids of the executions that were
    cancelled."""
    execution_ids = (await session.execute(
        select(ExecutionAlert.execution_id).where(ExecutionAlert.alert_id == alert_id)
    )).scalars().all()
    cancelled = []
    for execution_id in execution_ids:
        execution = await lock_execution(session, execution_id)
        if execution.status not in states.ACTIVE_EXECUTION:
            continue
        still_firing = (await session.execute(
            select(func.count()).select_from(ExecutionAlert)
            .join(Alert, Alert.id == ExecutionAlert.alert_id)
            .where(ExecutionAlert.execution_id == execution_id, Alert.status != RESOLVED)
        )).scalar_one()
        if still_firing:
            continue
        execution.alerts_resolved_at = utcnow()
        runbook = await runbook_of.get(session, execution.runbook_id,
                                       execution.runbook_version)
        policy, decider = runbook.on_resolve_at(execution.cursor)
        if policy == "continue":
            record_event(session, kind="alert.resolved", entity="execution", actor=actor,
                         execution_id=execution_id,
                         reason=f"every alert resolved; {decider} says on_resolve: continue")
            continue
        await cancel_execution(session, execution_id, actor=actor,
                               reason="every alert of this execution resolved")
        cancelled.append(execution_id)
    return cancelled


async def void_approvals(session: AsyncSession, step: StepRun, *, reason: str,
                         actor: str, source_addr: str | None = None) -> int:
    """Void the standing decisions on a step (its plan changed, or it is asked again after a
    retry), with an event when there were any. Returns how many."""
    result = await session.execute(
        update(Approval).where(Approval.step_run_id == step.id, Approval.voided_at.is_(None))
        .values(voided_at=utcnow(), void_reason=reason)
    )
    count = result.rowcount or 0
    if count:
        record_event(session, kind="approvals.voided", entity="step", actor=actor,
                     execution_id=step.execution_id, step_run_id=step.id,
                     step_id=step.step_id, reason=reason, source_addr=source_addr,
                     data={"count": count})
    return count


async def resolve_attention(
    session: AsyncSession, execution_id: int, *, choice: str, runbook: Runbook, actor: str,
    comment: str = "", source_addr: str | None = None,
) -> Execution:
    """A human's choice for an execution in `needs_attention`: retry, skip or abort."""
    execution = await lock_execution(session, execution_id)
    if execution.status != states.NEEDS_ATTENTION:
        raise Conflict(f"execution {execution_id} is {execution.status}; retry, skip and "
                       "abort apply only to needs_attention", current_state=execution.status)
    step = (await session.execute(
        select(StepRun).where(StepRun.execution_id == execution_id, StepRun.kind == "step",
                              StepRun.status == states.STEP_INTERRUPTED)
    )).scalars().first()
    reason = f"{choice} by {actor}" + (f": {comment}" if comment else "")
    record_event(session, kind=f"manual.{choice}", entity="execution", actor=actor,
                 execution_id=execution_id, source_addr=source_addr, reason=comment)
    if choice == "abort":
        await cancel_open_steps(session, execution_id, actor=actor, reason=reason)
        return await transition_execution(session, execution, states.FAILED, actor=actor,
                                          reason=reason, source_addr=source_addr)
    if step is not None:
        # Approvals were given for the run that was cut: a retried risky step needs its
        # full quorum again, and a skipped one keeps none standing.
        await void_approvals(session, step, reason=f"void on {reason}", actor=actor,
                             source_addr=source_addr)
        to_state = states.STEP_PENDING if choice == "retry" else states.STEP_SKIPPED
        await transition_step(session, step, to_state, actor=actor, reason=reason,
                              source_addr=source_addr)
        if choice == "skip":
            index = runbook.step_index(step.step_id)
            execution.cursor = (runbook.steps[index + 1].id if index + 1 < len(runbook.steps)
                                else states.CURSOR_END)
    return await transition_execution(session, execution, states.PENDING, actor=actor,
                                      reason=reason, source_addr=source_addr, wake_at=None)


def rollback_run(execution: Execution, runbook: Runbook, step: Step) -> StepRun:
    """A queued rollback of `step`: risky (approved by the step's approvers) when the step is
    risky, unless the runbook marks the rollback `auto`."""
    assert step.rollback is not None
    return StepRun(
        execution_id=execution.id, step_id=step.id, kind="rollback",
        position=runbook.step_index(step.id), title=step.rollback.title,
        action=step.rollback.action, risky=step.risk == "risky" and not step.rollback.auto,
        idempotent=False, status=states.STEP_PENDING, attempts=0, params=step.rollback.with_,
        created_at=utcnow(),
    )


# A step that started may have changed something, whatever its end: its undo may be wanted.
_UNDOABLE = frozenset({states.STEP_SUCCEEDED, states.STEP_FAILED, states.STEP_TIMED_OUT,
                       states.STEP_INTERRUPTED})


async def start_rollback(
    session: AsyncSession, execution_id: int, step_id: str, *, runbook_of: RunbookSource,
    actor: str, reason: str = "", source_addr: str | None = None,
) -> Execution:
    """Start, by hand, the declared rollback of a step that ran: a new execution of the same
    runbook version and target, linked to the first, whose one step is that rollback. It asks
    the step's approvers when the step was risky, like any risky step; the per-target lock
    keeps it from running beside another execution on the same target."""
    source = await lock_execution(session, execution_id)
    runbook = await runbook_of.get(session, source.runbook_id, source.runbook_version)
    try:
        step = runbook.step(step_id)
    except KeyError:
        raise NotFound(f"runbook {runbook.id} has no step {step_id!r}") from None
    if step.rollback is None:
        raise Conflict(f"step {step_id} of runbook {runbook.id} has no rollback to run",
                       current_state=source.status)
    ran = (await session.execute(
        select(StepRun).where(StepRun.execution_id == execution_id, StepRun.step_id == step_id,
                              StepRun.kind == "step"))).scalar_one_or_none()
    if ran is None or ran.status not in _UNDOABLE:
        raise Conflict(f"step {step_id} never ran in execution {execution_id}: there is "
                       "nothing to roll back", current_state=ran.status if ran else None)
    busy = await active_execution_for(session, runbook.id, source.target)
    if busy is not None:
        raise Conflict(f"execution {busy.id} is active on {source.target}; cancel it or wait "
                       "for it before rolling back", current_state=busy.status)
    now = utcnow()
    execution = Execution(
        runbook_id=runbook.id, runbook_version=source.runbook_version, target=source.target,
        status=states.PENDING, params=source.params, dry_run=source.dry_run,
        trigger="rollback", started_by=actor, parent_id=source.id, created_at=now,
        updated_at=now, cursor=states.CURSOR_ROLLBACK,
    )
    try:
        await insert_active(session, execution)
    except IntegrityError:
        raise Conflict(f"another execution became active on {source.target}; try again once "
                       "it ends", current_state=None) from None
    await add_step_run(session, rollback_run(execution, runbook, step))
    record_event(
        session, kind="execution.created", entity="execution", actor=actor,
        execution_id=execution.id, to_state=states.PENDING, source_addr=source_addr,
        reason=f"rollback of step {step_id} of execution {source.id}"
               + (f": {reason}" if reason else ""),
        data={"params": source.params, "parent_id": source.id, "step_id": step_id,
              "version": source.runbook_version},
    )
    record_event(session, kind="rollback.started", entity="execution", actor=actor,
                 execution_id=source.id, source_addr=source_addr,
                 reason=f"rollback of step {step_id} started as execution {execution.id}"
                        + (f": {reason}" if reason else ""),
                 data={"rollback_execution_id": execution.id, "step_id": step_id})
    return execution
