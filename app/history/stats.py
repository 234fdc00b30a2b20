"""Is time to restore getting better? Outcomes, automation and timings per runbook.

Definitions, measured from the stored timestamps:
- time to acknowledge: the alert firing (or a manual start) until the first step started;
- time to diagnose: the alert firing until the first step finished (the first check);
- time to approve: a risky step waiting until its last counted approval;
- time to restore: the alert firing until the execution succeeded or the alert resolved,
  whichever came first.
Objectives come from each runbook's `objectives`, as declared in the version that ran.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import ScalarSelect

from app.catalog.models import RunbookVersion
from app.durations import parse_duration
from app.engine import states
from app.engine.models import Approval, Execution, StepRun
from app.history.feedback import Helpfulness, helpfulness_by_runbook


class Percentiles(BaseModel):
    count: int
    p50: float | None
    p90: float | None


class Compliance(BaseModel):
    objective_seconds: float | None
    measured: int
    met: int
    ratio: float | None


class RunbookStats(BaseModel):
    executions: int
    outcomes: dict[str, int]
    automatic: int
    needed_approval: int
    time_to_acknowledge_seconds: Percentiles
    time_to_diagnose_seconds: Percentiles
    time_to_approve_seconds: Percentiles
    time_to_restore_seconds: Percentiles
    diagnose_objective: Compliance
    restore_objective: Compliance


class StatsOut(BaseModel):
    since: dt.datetime
    until: dt.datetime
    overall: RunbookStats
    runbooks: dict[str, RunbookStats]
    # Responder feedback per runbook (only runbooks with some): app/history/feedback.py.
    helpfulness: dict[str, Helpfulness] = {}


@dataclass
class _Acc:
    outcomes: Counter[str] = field(default_factory=Counter)
    approval_needed: int = 0
    ack: list[float] = field(default_factory=list)
    diagnose: list[float] = field(default_factory=list)
    approve: list[float] = field(default_factory=list)
    restore: list[float] = field(default_factory=list)
    diagnose_met: list[bool] = field(default_factory=list)
    restore_met: list[bool] = field(default_factory=list)
    objectives: tuple[float | None, float | None] = (None, None)

    def merge(self, other: _Acc) -> None:
        self.outcomes.update(other.outcomes)
        self.approval_needed += other.approval_needed
        for name in ("ack", "diagnose", "approve", "restore", "diagnose_met", "restore_met"):
            getattr(self, name).extend(getattr(other, name))

    def out(self) -> RunbookStats:
        total = sum(self.outcomes.values())
        return RunbookStats(
            executions=total, outcomes=dict(self.outcomes),
            automatic=total - self.approval_needed, needed_approval=self.approval_needed,
            time_to_acknowledge_seconds=_pct(self.ack),
            time_to_diagnose_seconds=_pct(self.diagnose),
            time_to_approve_seconds=_pct(self.approve),
            time_to_restore_seconds=_pct(self.restore),
            diagnose_objective=_compliance(self.objectives[0], self.diagnose_met),
            restore_objective=_compliance(self.objectives[1], self.restore_met),
        )


def _pct(values: list[float]) -> Percentiles:
    if not values:
        return Percentiles(count=0, p50=None, p90=None)
    if len(values) == 1:
        return Percentiles(count=1, p50=values[0], p90=values[0])
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return Percentiles(count=len(values), p50=statistics.median(values), p90=cuts[8])


def _compliance(objective: float | None, met: list[bool]) -> Compliance:
    return Compliance(objective_seconds=objective, measured=len(met), met=sum(met),
                      ratio=(sum(met) / len(met)) if met else None)


async def compute_stats(session: AsyncSession, *, since: dt.datetime, until: dt.datetime,
                        runbook: str | None = None) -> StatsOut:
    """Stats over executions created in [since, until)."""
    window = [Execution.created_at >= since, Execution.created_at < until]
    if runbook:
        window.append(Execution.runbook_id == runbook)
    executions = list((await session.execute(select(Execution).where(*window))).scalars())
    # The step and approval queries select the same window as a subquery: a bind parameter
    # per execution would break past 32,767 of them (asyncpg's limit) and slow long before.
    in_window = select(Execution.id).where(*window).scalar_subquery()
    first_start, first_finish, risky = await _step_times(session, in_window)
    approve_waits = await _approval_waits(session, in_window)
    objectives = await _objectives(session, {(e.runbook_id, e.runbook_version)
                                             for e in executions})

    per: dict[str, _Acc] = defaultdict(_Acc)
    for e in executions:
        acc = per[e.runbook_id]
        diag_obj, restore_obj = objectives.get((e.runbook_id, e.runbook_version), (None, None))
        acc.objectives = (diag_obj, restore_obj)
        acc.outcomes[e.status] += 1
        acc.approval_needed += e.id in risky
        origin = e.alert_fired_at or e.created_at
        if e.id in first_start:
            acc.ack.append(_seconds(origin, first_start[e.id]))
        if e.id in first_finish:
            diagnose = _seconds(origin, first_finish[e.id])
            acc.diagnose.append(diagnose)
            if diag_obj is not None:
                acc.diagnose_met.append(diagnose <= diag_obj)
        acc.approve.extend(approve_waits.get(e.id, []))
        restored = [t for t in (e.finished_at if e.status == states.SUCCEEDED else None,
                                e.alerts_resolved_at) if t is not None]
        if restored and e.alert_fired_at is not None:
            restore = _seconds(e.alert_fired_at, min(restored))
            acc.restore.append(restore)
            if restore_obj is not None:
                acc.restore_met.append(restore <= restore_obj)

    overall = _Acc()
    for acc in per.values():
        overall.merge(acc)
    return StatsOut(since=since, until=until, overall=overall.out(),
                    runbooks={rid: acc.out() for rid, acc in sorted(per.items())},
                    helpfulness=await helpfulness_by_runbook(session, since=since, until=until,
                                                             runbook=runbook))


def _seconds(start: dt.datetime, end: dt.datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


async def _step_times(session: AsyncSession, in_window: ScalarSelect[int],
                      ) -> tuple[dict[int, dt.datetime], dict[int, dt.datetime], set[int]]:
    rows = (await session.execute(
        select(StepRun.execution_id, func.min(StepRun.started_at), func.min(StepRun.finished_at),
               func.max(case((StepRun.risky, 1), else_=0)))
        .where(StepRun.execution_id.in_(in_window), StepRun.kind == "step")
        .group_by(StepRun.execution_id)
    )).all()
    starts = {eid: s for eid, s, _, _ in rows if s is not None}
    finishes = {eid: f for eid, _, f, _ in rows if f is not None}
    risky = {eid for eid, _, _, r in rows if r}
    return starts, finishes, risky


async def _approval_waits(session: AsyncSession,
                          in_window: ScalarSelect[int]) -> dict[int, list[float]]:
    rows = (await session.execute(
        select(StepRun.execution_id, StepRun.awaiting_since, func.max(Approval.created_at))
        .join(Approval, Approval.step_run_id == StepRun.id)
        .where(StepRun.execution_id.in_(in_window), Approval.decision == "approve",
               Approval.voided_at.is_(None), StepRun.awaiting_since.is_not(None))
        .group_by(StepRun.id, StepRun.execution_id, StepRun.awaiting_since)
    )).all()
    waits: dict[int, list[float]] = defaultdict(list)
    for eid, since, approved in rows:
        waits[eid].append(_seconds(since, approved))
    return waits


async def _objectives(session: AsyncSession, keys: set[tuple[str, str]],
                      ) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    out: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for rid, version in keys:
        content: Any = (await session.execute(
            select(RunbookVersion.content).where(RunbookVersion.runbook_id == rid,
                                                 RunbookVersion.version == version)
        )).scalar_one_or_none()
        objectives = (content or {}).get("objectives") or {}
        out[(rid, version)] = tuple(  # type: ignore[assignment]
            parse_duration(objectives[k]).total_seconds() if objectives.get(k) else None
            for k in ("time_to_diagnose", "time_to_restore"))
    return out
