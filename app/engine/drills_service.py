"""Drill runs: start one (scheduled or by hand), settle it when its execution ends, read them.

A drill run is a row in `drill_runs`; its execution is an ordinary execution with `dry_run`
set, on the target `drill:<target>` so that it never takes the per-target lock a real alert
needs (an alert for the model joins nothing and waits for nothing). Services take the session
and only flush; the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.catalog.params import ParamError, render_target, validate_manual_params
from app.catalog.schema import Runbook
from app.catalog.templating import RenderError
from app.db import after_commit, dialect_insert, utcnow
from app.engine import states
from app.engine.context import failure_channels
from app.engine.drills import DRILL_PRECONDITIONS
from app.engine.drills_models import FINISHED, RUNNING, SKIPPED, DrillRun
from app.engine.drills_verdicts import Verdict, headline, problems, step_verdict, unreached
from app.engine.models import Execution, StepRun
from app.engine.starts import start_or_attach
from app.events import Event, record_event
from app.notify.outbox import enqueue

TARGET_PREFIX = "drill:"


class DrillParamsInvalid(ValueError):
    """The drill's params do not fit the runbook (or its target does not render)."""


def drill_params(runbook: Runbook, given: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The validated params of a drill (given, else the runbook's `drill.params`) and its
    target; raises DrillParamsInvalid saying what to fix."""
    values = dict(given) if given else dict(runbook.drill.params if runbook.drill else {})
    try:
        params = validate_manual_params(runbook, values)
        return params, TARGET_PREFIX + render_target(runbook, params)
    except (ParamError, RenderError, ValueError) as exc:
        raise DrillParamsInvalid(f"params for a drill of {runbook.id}: {exc}") from None


async def claim_due(session: AsyncSession, *, runbook_id: str, version: str,
                    due_at: dt.datetime, trigger: str, started_by: str) -> DrillRun | None:
    """Insert the drill run of (runbook, due time) unless one exists: the row that makes one
    replica, and only one, run a due drill. None when another took it first."""
    taken = (await session.execute(select(DrillRun.id).where(
        DrillRun.runbook_id == runbook_id, DrillRun.due_at == due_at))).first()
    if taken is not None:  # the usual answer after the first tick: no insert, no sequence id
        return None
    insert = dialect_insert(session)
    now = utcnow()
    statement = insert(DrillRun).values(
        runbook_id=runbook_id, runbook_version=version, due_at=due_at, trigger=trigger,
        started_by=started_by[:128], phase=RUNNING, reason="", started_at=now,
        problems=0, verdicts=[],
    ).on_conflict_do_nothing(index_elements=["runbook_id", "due_at"]).returning(DrillRun.id)
    drill_id = (await session.execute(statement)).scalar_one_or_none()
    if drill_id is None:
        return None
    return await session.get(DrillRun, drill_id)


async def start_drill(session: AsyncSession, *, runbook: Runbook, version: str,
                      due_at: dt.datetime, trigger: str, started_by: str,
                      params: Mapping[str, Any] | None = None) -> DrillRun | None:
    """Claim the drill of (runbook, due_at) and start its execution; None when another
    replica claimed it. Params that do not fit make a finished drill with that problem."""
    row = await claim_due(session, runbook_id=runbook.id, version=version, due_at=due_at,
                          trigger=trigger, started_by=started_by)
    if row is None:
        return None
    try:
        checked, target = drill_params(runbook, params)
    except DrillParamsInvalid as exc:
        _finish(row, [Verdict("params", "The drill's params", "", "check", False, str(exc))],
                reason=str(exc))
        return row
    execution, created = await start_or_attach(
        session, runbook=runbook, version=version, target=target, params=checked,
        alert_id=None, alert_fired_at=None, actor=started_by, trigger="drill",
        started_by=started_by, dry_run=True, reason=f"drill {row.id} ({trigger})")
    row.execution_id = execution.id
    if not created:
        row.phase, row.finished_at = SKIPPED, utcnow()
        row.reason = f"a drill of {runbook.id} is still going: execution {execution.id}"
    return row


async def settle_drill(session: AsyncSession, execution: Execution, runbook: Runbook, *,
                       actor: str) -> DrillRun | None:
    """Judge an ended drill's execution: per-step verdicts, its problems count, and a
    notification to the runbook's owner when it found any. Idempotent."""
    row = (await session.execute(
        select(DrillRun).where(DrillRun.execution_id == execution.id,
                               DrillRun.phase == RUNNING).with_for_update()
    )).scalar_one_or_none()
    if row is None:
        return None  # a dry run started through the executions API: no drill run to settle
    verdicts = await _verdicts(session, execution, runbook)
    found = _finish(row, verdicts, reason=execution.status_reason or execution.status)
    finished_at, runbook_id = row.finished_at, runbook.id
    assert finished_at is not None
    after_commit(session, lambda: publish(runbook_id, finished_at, found))
    record_event(session, kind="drill.finished", entity="execution", actor=actor,
                 execution_id=execution.id, reason=f"drill {row.id} of {runbook.id}: "
                 f"{headline(found)}", data={"drill_id": row.id, "problems": found})
    if found:
        bad = [v for v in verdicts if not v.ok]
        lines = "; ".join(f"{v.step}: {v.reason}" for v in bad[:5])
        enqueue(session, kind="drill_problems", channels=failure_channels(runbook),
                payload={"kind": "drill_problems", "runbook": runbook.id,
                         "runbook_title": runbook.title, "owner": runbook.owner,
                         "severity": runbook.severity, "execution_id": execution.id,
                         "drill_id": row.id, "problems": found, "dry_run": True,
                         "text": f"drill of {runbook.id} (owner {runbook.owner}) found "
                                 f"{headline(found)}: {lines}"[:2000]},
                dedup_key=f"runbookd-drill-{row.id}", execution_id=execution.id)
    return row


async def settle_ended(session: AsyncSession, runbook_of: Any) -> int:
    """Settle drill runs whose execution ended without reaching the end (cancelled, a
    human's abort) or vanished: the scheduler's sweep. Returns how many it settled."""
    rows = (await session.execute(
        select(DrillRun, Execution).outerjoin(Execution, Execution.id == DrillRun.execution_id)
        .where(DrillRun.phase == RUNNING, DrillRun.execution_id.is_not(None))
        .with_for_update(of=DrillRun, skip_locked=True)
    )).all()
    settled = 0
    for row, execution in rows:
        if execution is not None and execution.status not in states.FINAL_EXECUTION:
            continue
        if execution is None:
            _finish(row, [], reason="its execution was deleted")
        else:
            runbook = await runbook_of(session, execution.runbook_id, execution.runbook_version)
            await settle_drill(session, execution, runbook, actor="scheduler")
        settled += 1
    return settled


def publish(runbook_id: str, finished_at: dt.datetime, problems_found: int) -> None:
    """Set the runbook's drill gauges (the scheduler also sets them from the database, so
    every replica shows the last drill whoever ran it)."""
    metrics.runbook_last_drill_timestamp.labels(runbook_id).set(finished_at.timestamp())
    metrics.runbook_drill_problems.labels(runbook_id).set(problems_found)


def _finish(row: DrillRun, verdicts: list[Verdict], *, reason: str) -> int:
    found = problems(verdicts)
    row.phase, row.finished_at = FINISHED, utcnow()
    row.verdicts = [v.as_dict() for v in verdicts]
    row.problems = found
    row.reason = reason[:2000]
    return found


async def _verdicts(session: AsyncSession, execution: Execution,
                    runbook: Runbook) -> list[Verdict]:
    checks = (await session.execute(
        select(Event.data).where(Event.execution_id == execution.id,
                                 Event.kind == DRILL_PRECONDITIONS).order_by(Event.id.desc())
        .limit(1))).scalar_one_or_none()
    out = [Verdict(**c) for c in ((checks or {}).get("checks") or [])]
    runs = {r.step_id: r for r in (await session.execute(
        select(StepRun).where(StepRun.execution_id == execution.id,
                              StepRun.kind == "step"))).scalars()}
    for step in runbook.steps:
        run = runs.get(step.id)
        if run is None:
            if execution.status != states.SUCCEEDED:
                out.append(unreached(step.id, step.title, step.action,
                                     f"the drill ended {execution.status}"))
            continue
        out.append(step_verdict(step=step.id, title=step.title, action=step.action,
                                status=run.status, summary=run.summary, error=run.error,
                                output=run.output, params=run.params))
    return out


async def latest_drills(session: AsyncSession, runbook_id: str, *,
                        limit: int = 20) -> list[DrillRun]:
    """The runbook's latest drill runs, newest first."""
    return list((await session.execute(
        select(DrillRun).where(DrillRun.runbook_id == runbook_id)
        .order_by(DrillRun.started_at.desc(), DrillRun.id.desc()).limit(limit))).scalars())


async def last_finished(session: AsyncSession) -> dict[str, DrillRun]:
    """Each runbook's last finished drill run (for stats, pages and /metrics)."""
    latest = (select(DrillRun.runbook_id, func.max(DrillRun.id).label("id"))
              .where(DrillRun.phase == FINISHED).group_by(DrillRun.runbook_id).subquery())
    rows = (await session.execute(
        select(DrillRun).join(latest, latest.c.id == DrillRun.id))).scalars()
    return {row.runbook_id: row for row in rows}
