"""Is time to restore getting better? Outcomes, automation and timings per runbook.

Definitions, measured from the stored timestamps:
- time to acknowledge: the alert firing (or a manual start) until the first step started;
- time to diagnose: the alert firing until the first step finished (the first check);
- time to approve: a risky step waiting until its last counted approval;
- time to restore: the alert firing until the execution succeeded or the alert resolved,
  whichever came first.
Objectives come from each runbook's `objectives`, as declared in the version that ran.

At scale the whole hours of a window come from rollups (app/history/rollups.py), where the
timings are log-bucketed histograms: percentiles read from them are within a bucket (19%) of
the exact ones, and usually much closer. Counts, outcomes and objectives met stay exact.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.engine import rollups
from app.engine.drills_service import last_finished
from app.engine.models import Execution, StepRun
from app.history import rollups as history_rollups
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


class LastDrill(BaseModel):
    """A runbook's last finished drill (the stats page's drills panel reads the same rows)."""

    drill_id: int
    finished_at: dt.datetime | None
    problems: int
    runbook_version: str
    execution_id: int | None


class StatsOut(BaseModel):
    since: dt.datetime
    until: dt.datetime
    overall: RunbookStats
    runbooks: dict[str, RunbookStats]
    # Responder feedback per runbook (only runbooks with some): app/history/feedback.py.
    helpfulness: dict[str, Helpfulness] = {}
    # The last finished drill of each drilled runbook, whenever it was: a drill is not an
    # incident, so the window does not apply (issue 16). Drills' own executions are dry runs.
    drills: dict[str, LastDrill] = {}


@dataclass
class _Acc:
    outcomes: Counter[str] = field(default_factory=Counter)
    approval_needed: int = 0
    # Values of the executions read one by one; histograms of those read from the rollups.
    values: dict[str, list[float]] = field(
        default_factory=lambda: {m: [] for m in rollups.METRICS})
    hists: dict[str, dict[int, list[float]]] = field(
        default_factory=lambda: {m: {} for m in rollups.METRICS})
    diagnose_measured: int = 0
    diagnose_met: int = 0
    restore_measured: int = 0
    restore_met: int = 0
    # The objectives of the newest version seen, and when that version last ran.
    objectives: tuple[float | None, float | None] = (None, None)
    objectives_at: dt.datetime | None = None

    def add(self, f: rollups.Facts, objectives: rollups.Objectives) -> None:
        self.outcomes[f.status] += 1
        self.approval_needed += f.needed_approval
        for metric, values in (("ack", (f.ack,)), ("diagnose", (f.diagnose,)),
                               ("approve", f.approve), ("restore", (f.restore,))):
            self.values[metric].extend(v for v in values if v is not None)
        self.diagnose_measured += f.diagnose_met is not None
        self.diagnose_met += bool(f.diagnose_met)
        self.restore_measured += f.restore_met is not None
        self.restore_met += bool(f.restore_met)
        self.seen(objectives, f.created_at)

    def seen(self, objectives: rollups.Objectives, at: dt.datetime) -> None:
        if self.objectives_at is None or at >= self.objectives_at:
            self.objectives, self.objectives_at = objectives, at

    def merge(self, other: _Acc) -> None:
        self.outcomes.update(other.outcomes)
        self.approval_needed += other.approval_needed
        for metric in rollups.METRICS:
            self.values[metric].extend(other.values[metric])
            hist = self.hists[metric]
            for bucket, (count, total) in other.hists[metric].items():
                into = hist.setdefault(bucket, [0, 0.0])
                into[0] += count
                into[1] += total
        self.diagnose_measured += other.diagnose_measured
        self.diagnose_met += other.diagnose_met
        self.restore_measured += other.restore_measured
        self.restore_met += other.restore_met

    def out(self) -> RunbookStats:
        total = sum(self.outcomes.values())
        timing = {m: _pct(self.values[m], self.hists[m]) for m in rollups.METRICS}
        return RunbookStats(
            executions=total, outcomes=dict(self.outcomes),
            automatic=total - self.approval_needed, needed_approval=self.approval_needed,
            time_to_acknowledge_seconds=timing["ack"],
            time_to_diagnose_seconds=timing["diagnose"],
            time_to_approve_seconds=timing["approve"],
            time_to_restore_seconds=timing["restore"],
            diagnose_objective=_compliance(self.objectives[0], self.diagnose_measured,
                                           self.diagnose_met),
            restore_objective=_compliance(self.objectives[1], self.restore_measured,
                                          self.restore_met),
        )


def _pct(values: list[float], hist: dict[int, list[float]]) -> Percentiles:
    """Exact percentiles of the values when there is no histogram; otherwise the values join
    the histogram and each percentile is interpolated between bucket means, the way
    `statistics.quantiles(method="inclusive")` interpolates between values."""
    if not hist:
        if not values:
            return Percentiles(count=0, p50=None, p90=None)
        if len(values) == 1:
            return Percentiles(count=1, p50=values[0], p90=values[0])
        cuts = statistics.quantiles(values, n=10, method="inclusive")
        return Percentiles(count=len(values), p50=statistics.median(values), p90=cuts[8])
    merged = {bucket: list(sums) for bucket, sums in hist.items()}
    for value in values:
        sums = merged.setdefault(rollups.bucket_of(value), [0, 0.0])
        sums[0] += 1
        sums[1] += value
    ranked = sorted(merged.items())
    means = [total / n for _, (n, total) in ranked]
    ends = list(itertools.accumulate(int(n) for _, (n, _total) in ranked))  # ranks < end
    count = ends[-1]

    def at(rank: int) -> float:
        return means[bisect.bisect_right(ends, rank)]

    def quantile(q: float) -> float:
        position = (count - 1) * q
        low = math.floor(position)
        below = at(low)
        return below + (position - low) * (at(min(low + 1, count - 1)) - below)

    return Percentiles(count=count, p50=quantile(0.5), p90=quantile(0.9))


def _compliance(objective: float | None, measured: int, met: int) -> Compliance:
    return Compliance(objective_seconds=objective, measured=measured, met=met,
                      ratio=(met / measured) if measured else None)


async def compute_stats(session: AsyncSession, *, since: dt.datetime, until: dt.datetime,
                        runbook: str | None = None) -> StatsOut:
    """Stats over executions created in [since, until).

    The whole hours inside the window come from the rollups (executions that have ended) and
    the executions still active in them; the minutes before the first whole hour and after
    the last are read execution by execution.
    """
    cover = history_rollups.cover(since, until)
    per: dict[str, _Acc] = defaultdict(_Acc)
    await _add_executions(session, per, history_rollups.direct_ids(cover, runbook))
    if cover.rolled is not None:
        await _add_rollups(session, per, cover.rolled, runbook)
    return await _stats_out(session, per, since=since, until=until, runbook=runbook)


async def compute_stats_directly(session: AsyncSession, *, since: dt.datetime,
                                 until: dt.datetime, runbook: str | None = None) -> StatsOut:
    """The same stats from every execution of the window, read one by one: what the rollups
    are checked against (exact percentiles, and slow over a month at scale)."""
    per: dict[str, _Acc] = defaultdict(_Acc)
    await _add_executions(session, per, history_rollups.direct_ids(
        history_rollups.Cover(None, ((since, until),)), runbook))
    return await _stats_out(session, per, since=since, until=until, runbook=runbook)


async def _stats_out(session: AsyncSession, per: dict[str, _Acc], *, since: dt.datetime,
                     until: dt.datetime, runbook: str | None) -> StatsOut:
    overall = _Acc()
    for acc in per.values():
        overall.merge(acc)
    return StatsOut(since=since, until=until, overall=overall.out(),
                    runbooks={rid: acc.out() for rid, acc in sorted(per.items())},
                    helpfulness=await helpfulness_by_runbook(session, since=since, until=until,
                                                             runbook=runbook),
                    drills=await _last_drills(session, runbook))


async def _last_drills(session: AsyncSession, runbook: str | None) -> dict[str, LastDrill]:
    last = await last_finished(session)
    return {rid: LastDrill(drill_id=run.id, finished_at=run.finished_at, problems=run.problems,
                           runbook_version=run.runbook_version, execution_id=run.execution_id)
            for rid, run in sorted(last.items()) if runbook is None or rid == runbook}


async def _add_executions(session: AsyncSession, per: dict[str, _Acc], ids: Any) -> None:
    """Add the executions whose ids `ids` selects, one by one."""
    # The step and approval queries select the same executions as a subquery: a bind parameter
    # per execution would break past 32,767 of them (asyncpg's limit) and slow long before.
    # The columns facts() reads, as plain rows: no ORM instances to build and track (a month's
    # edges are about 150 executions, and compute_stats_directly reads every one).
    e = Execution
    executions = (await session.execute(
        select(e.id, e.runbook_id, e.runbook_version, e.status, e.created_at, e.finished_at,
               e.alert_fired_at, e.alerts_resolved_at)
        .where(e.id.in_(ids)).order_by(e.id))).all()
    if not executions:
        return
    in_window = StepRun.execution_id.in_(ids)
    times = rollups.step_times_of(
        (await session.execute(rollups.step_times_query(in_window))).all(),
        (await session.execute(rollups.approval_waits_query(in_window))).all())
    for row in executions:
        objectives = await rollups.version_objectives(session, row.runbook_id,
                                                      row.runbook_version)
        per[row.runbook_id].add(
            rollups.facts(row, times.get(row.id, rollups.StepTimes()), objectives), objectives)


async def _add_rollups(session: AsyncSession, per: dict[str, _Acc],
                       rolled: tuple[dt.datetime, dt.datetime], runbook: str | None) -> None:
    counters, hists = await history_rollups.read(session, rolled, runbook)
    for c in counters:
        acc = per[c.runbook_id]
        acc.outcomes[c.status] += c.executions
        acc.approval_needed += c.needed_approval
        acc.diagnose_measured += c.diagnose_measured
        acc.diagnose_met += c.diagnose_met
        acc.restore_measured += c.restore_measured
        acc.restore_met += c.restore_met
        acc.seen(await rollups.version_objectives(session, c.runbook_id, c.runbook_version),
                 c.latest)
    for runbook_id, metric, bucket, count, total in hists:
        per[runbook_id].hists[metric][bucket] = [count, total]
