"""The one writer of execution and step-run state (invariant 5).

Each call locks the row, checks the transition table in `states.py`, applies the change and
appends an event, all in the caller's transaction. Nothing else assigns `status`.

A row is locked once per transaction: `lock_execution` and `lock_step` remember what they
locked in the session, and a transition given a row locked earlier in the same transaction
uses it as it is rather than asking the database again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app import metrics
from app.db import after_commit, utcnow
from app.engine import states
from app.engine.models import Execution, StepRun
from app.engine.rollups import record_final
from app.errors import Conflict, LeaseLost, NotFound
from app.events import record_event

_Row = TypeVar("_Row", Execution, StepRun)

_LOCKED = "runbookd.locked_rows"
# Executions whose step runs were all read in this transaction: execution id -> its runs.
_STEP_RUNS = "runbookd.step_runs"
# PostgreSQL: step-run ids taken from the sequence for this transaction, not yet given out.
_STEP_RUN_IDS = "runbookd.step_run_ids"
# SQLite: the highest step-run id this transaction has seen, given out or inserted.
_HIGHEST_STEP_RUN = "runbookd.highest_step_run"
# How many new step runs the transaction may add (a round's decisions): how many ids to take.
NEW_RUNS_HINT = "runbookd.new_step_runs_hint"


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: object) -> None:
    """Row locks end with the transaction, and so does the memory of them."""
    if getattr(transaction, "parent", None) is None:
        session.info.pop(_LOCKED, None)
        session.info.pop(_STEP_RUNS, None)
        session.info.pop(_STEP_RUN_IDS, None)
        session.info.pop(_HIGHEST_STEP_RUN, None)


@event.listens_for(Session, "pending_to_persistent")
def _remember_new_step_run(session: Session, instance: object) -> None:
    """A run inserted in this transaction joins its execution's remembered runs."""
    if isinstance(instance, StepRun):
        known = session.info.get(_STEP_RUNS, {}).get(instance.execution_id)
        if known is not None and all(run is not instance for run in known):
            known.append(instance)
        highest = session.info.get(_HIGHEST_STEP_RUN)
        if highest is not None and instance.id > highest:  # inserted without a taken id
            session.info[_HIGHEST_STEP_RUN] = instance.id


async def add_step_run(session: AsyncSession, run: StepRun) -> StepRun:
    """Add a new step run with its id taken up front: it goes in with the transaction's other
    writes at its next flush, rather than flushed on its own to learn its id (a round of
    decisions then writes its new runs together). Nobody else sees it before this
    transaction commits, so it is as good as locked."""
    run.id = await _take_step_run_id(session)
    session.add(run)
    remember_locked(session, run)
    known = session.info.get(_STEP_RUNS, {}).get(run.execution_id)
    if known is not None:
        known.append(run)
    return run


async def _take_step_run_id(session: AsyncSession) -> int:
    if session.bind.dialect.name != "postgresql":
        # SQLite has one writer, and this transaction is it by the time it inserts: the id
        # after the highest it has seen is what an INSERT would get (a rowid table). Runs
        # inserted without a taken id count too (`_remember_new_step_run`).
        highest = session.info.get(_HIGHEST_STEP_RUN)
        if highest is None:  # (the query flushes the runs added so far: they count)
            highest = (await session.execute(select(func.max(StepRun.id)))).scalar() or 0
        elif _unnumbered_runs(session):
            # A run added without a taken id would be inserted at the next id too.
            await session.flush()
            highest = session.info[_HIGHEST_STEP_RUN]
        session.info[_HIGHEST_STEP_RUN] = highest + 1
        return highest + 1
    ids: list[int] | None = session.info.get(_STEP_RUN_IDS)
    if not ids:
        # From the column's own sequence, as an INSERT takes it: never given out twice.
        ids = list((await session.execute(
            text("SELECT nextval(pg_get_serial_sequence('step_runs', 'id')) "
                 "FROM generate_series(1, :wanted)"),
            {"wanted": max(1, session.info.get(NEW_RUNS_HINT, 1))})).scalars())
        session.info[_STEP_RUN_IDS] = ids
    return ids.pop(0)


def _unnumbered_runs(session: AsyncSession) -> bool:
    """Whether a step run was added without an id: it gets one only when it is inserted."""
    return any(isinstance(row, StepRun) and row.id is None for row in session.new)


def remember_locked(session: AsyncSession, row: Execution | StepRun) -> None:
    """Note that `row` is locked in the session's current transaction."""
    session.info.setdefault(_LOCKED, set()).add((type(row).__name__, row.id))


def remember_step_runs(session: AsyncSession, execution_ids: list[int],
                       runs: Sequence[StepRun]) -> None:
    """Note that `runs`, locked in this transaction, are all the step runs of
    `execution_ids`: `step_runs_of` and `lock_step` then need no statement for them."""
    known: dict[int, list[StepRun]] = {execution_id: [] for execution_id in execution_ids}
    for run in runs:
        known[run.execution_id].append(run)
        remember_locked(session, run)
    session.info.setdefault(_STEP_RUNS, {}).update(known)


async def step_runs_of(session: AsyncSession, execution_id: int) -> list[StepRun]:
    """Every step run of an execution, as a query in this transaction would return them."""
    known = session.info.get(_STEP_RUNS, {}).get(execution_id)
    if known is None:
        return list((await session.execute(
            select(StepRun).where(StepRun.execution_id == execution_id))).scalars())
    if _unnumbered_runs(session):
        await session.flush()  # as the query's autoflush would: new runs get their ids
    return sorted(known, key=lambda run: run.id)


def _is_locked(session: AsyncSession, row: Execution | StepRun) -> bool:
    return (type(row).__name__, row.id) in session.info.get(_LOCKED, ())


def _locked_in_session(session: AsyncSession, kind: type[_Row], row_id: int) -> _Row | None:
    """The row if this transaction locked it already (a second lock would change nothing)."""
    if (kind.__name__, row_id) not in session.info.get(_LOCKED, ()):
        return None
    row = session.identity_map.get(identity_key(kind, row_id))
    return row if isinstance(row, kind) else None


async def lock_execution(session: AsyncSession, execution_id: int) -> Execution:
    """Load an execution with a row lock (FOR UPDATE on PostgreSQL)."""
    if (held := _locked_in_session(session, Execution, execution_id)) is not None:
        return held
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
    if (held := _locked_in_session(session, StepRun, step_run_id)) is not None:
        return held
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
    # A run added in this transaction and not yet inserted: nobody else can see it.
    if isinstance(step, StepRun) and (step.id is None or _is_locked(session, step)):
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
    if row.id is None:  # new in this transaction: inserted as it is now, for its id
        await session.flush()
        remember_locked(session, row)
    record_event(
        session, kind="step.state", entity="step", actor=actor, reason=reason,
        execution_id=row.execution_id, step_run_id=row.id, step_id=row.step_id,
        from_state=from_state, to_state=to_state, source_addr=source_addr, data=data,
    )
    return row
