"""What an ended execution adds to the stats, and the rollups that sum it (rollup_models.py).

`facts()` is the one definition of each timing (the stats read it for executions outside the
rollups too, so both paths agree). `record_final()` is the hook of the final transition: it adds
the execution to its hour's and its day's counters, and to its hour's, day's, week's and month's
histograms, in the same transaction, with upserts that add to a row rather than read it first.
A final state is final: nothing changes an ended execution's timings afterwards, so each
execution is added once. `backfill()` does the same for the rows that ended before the rollups
existed (migration 0010 runs it; 0012 derives the week and month rows from the day rows).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from app.catalog.models import RunbookVersion
from app.durations import parse_duration
from app.engine import states
from app.engine.models import Approval, Execution, StepRun
from app.engine.rollup_models import DAY, HOUR, MONTH, WEEK, StatsHistogram, StatsRollup

METRICS = ("ack", "diagnose", "approve", "restore")
# Four buckets per doubling: a bucket spans 19%, and its mean stands for its values, so a
# percentile read from the histogram is off by less than that (exact when a bucket's values
# are equal). Below a millisecond everything shares one bucket.
BUCKETS_PER_DOUBLING = 4
SMALLEST_BUCKET = -10 * BUCKETS_PER_DOUBLING - 1

# The spans each table is rolled up in (rollup_models.py says why the counters need fewer).
COUNTER_SPANS = (HOUR, DAY)
HISTOGRAM_SPANS = (HOUR, DAY, WEEK, MONTH)

Objectives = tuple[float | None, float | None]  # (time to diagnose, time to restore) seconds
_COUNTERS = ("executions", "needed_approval", "diagnose_measured", "diagnose_met",
             "restore_measured", "restore_met")


def bucket_of(seconds: float) -> int:
    """The log bucket of a duration."""
    if seconds < 2.0 ** -10:
        return SMALLEST_BUCKET
    return math.floor(math.log2(seconds) * BUCKETS_PER_DOUBLING)


def hour_of(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def day_of(at: dt.datetime) -> dt.datetime:
    return hour_of(at).replace(hour=0)


def week_of(at: dt.datetime) -> dt.datetime:
    """The Monday that starts the week of `at` (the stats page's weeks start on Mondays too)."""
    day = day_of(at)
    return day - dt.timedelta(days=day.weekday())


def month_of(at: dt.datetime) -> dt.datetime:
    return day_of(at).replace(day=1)


@dataclass(frozen=True)
class StepTimes:
    """An execution's first step start and finish (runbook steps, not rollbacks), whether a
    runbook step was risky, and each approved step's wait for its last approval."""

    first_start: dt.datetime | None = None
    first_finish: dt.datetime | None = None
    risky: bool = False
    approve_waits: tuple[float, ...] = ()


@dataclass(frozen=True)
class Facts:
    """One execution's share of the stats."""

    runbook_id: str
    runbook_version: str
    status: str
    created_at: dt.datetime
    needed_approval: bool
    ack: float | None
    diagnose: float | None
    approve: tuple[float, ...]
    restore: float | None
    diagnose_met: bool | None  # None: not measured (no value, or no objective)
    restore_met: bool | None


def seconds_between(start: dt.datetime, end: dt.datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


def facts(execution: Any, steps: StepTimes, objectives: Objectives) -> Facts:
    """Time to acknowledge (to the first step's start), to diagnose (to its finish), to
    approve (each wait) and to restore (the alert firing until success or resolution,
    whichever came first), and whether each met its objective."""
    origin = execution.alert_fired_at or execution.created_at
    ack = seconds_between(origin, steps.first_start) if steps.first_start else None
    diagnose = seconds_between(origin, steps.first_finish) if steps.first_finish else None
    restored = [t for t in (execution.finished_at if execution.status == states.SUCCEEDED
                            else None, execution.alerts_resolved_at) if t is not None]
    restore = (seconds_between(execution.alert_fired_at, min(restored))
               if restored and execution.alert_fired_at is not None else None)
    diag_obj, restore_obj = objectives
    return Facts(
        runbook_id=execution.runbook_id, runbook_version=execution.runbook_version,
        status=execution.status, created_at=execution.created_at,
        needed_approval=steps.risky, ack=ack, diagnose=diagnose, approve=steps.approve_waits,
        restore=restore,
        diagnose_met=(diagnose <= diag_obj if diagnose is not None and diag_obj is not None
                      else None),
        restore_met=(restore <= restore_obj if restore is not None and restore_obj is not None
                     else None))


def objectives_of(content: Any) -> Objectives:
    """The declared objectives of a runbook version's content, in seconds."""
    declared = (content or {}).get("objectives") or {}
    diagnose, restore = (parse_duration(declared[k]).total_seconds() if declared.get(k) else None
                         for k in ("time_to_diagnose", "time_to_restore"))
    return diagnose, restore


# Step times of many executions at once: `where` selects the executions' ids as a subquery
# (never a bind parameter per execution).
def step_times_query(where: Any) -> Select[Any]:
    step = StepRun.kind == "step"
    return (select(StepRun.execution_id,
                   func.min(case((step, StepRun.started_at))),
                   func.min(case((step, StepRun.finished_at))),
                   func.max(case((step & StepRun.risky, 1), else_=0)),
                   func.max(case((StepRun.awaiting_since.is_not(None), 1), else_=0)))
            .where(where).group_by(StepRun.execution_id))


def approval_waits_query(where: Any) -> Select[Any]:
    return (select(StepRun.execution_id, StepRun.awaiting_since, func.max(Approval.created_at))
            .join(Approval, Approval.step_run_id == StepRun.id)
            .where(where, Approval.decision == "approve", Approval.voided_at.is_(None),
                   StepRun.awaiting_since.is_not(None))
            .group_by(StepRun.id, StepRun.execution_id, StepRun.awaiting_since))


def step_times_of(step_rows: Iterable[Any], wait_rows: Iterable[Any]) -> dict[int, StepTimes]:
    """The rows of the two queries above, per execution."""
    waits: dict[int, list[float]] = defaultdict(list)
    for eid, since, approved in wait_rows:
        waits[eid].append(seconds_between(since, approved))
    return {eid: StepTimes(first_start=start, first_finish=finish, risky=bool(risky),
                           approve_waits=tuple(waits.get(eid, ())))
            for eid, start, finish, risky, _ in step_rows}


@dataclass
class Sums:
    """Rollup rows to add, keyed by their primary keys."""

    counters: dict[tuple[str, dt.datetime, str, str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0] * len(_COUNTERS)))
    histograms: dict[tuple[str, dt.datetime, str, str, int], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0.0]))

    def add(self, f: Facts) -> None:
        spans = {HOUR: hour_of(f.created_at), DAY: day_of(f.created_at),
                 WEEK: week_of(f.created_at), MONTH: month_of(f.created_at)}
        for span in COUNTER_SPANS:
            row = self.counters[(span, spans[span], f.runbook_id, f.runbook_version, f.status)]
            for i, value in enumerate((1, f.needed_approval, f.diagnose_met is not None,
                                       bool(f.diagnose_met), f.restore_met is not None,
                                       bool(f.restore_met))):
                row[i] += int(value)
        for metric, values in (("ack", (f.ack,)), ("diagnose", (f.diagnose,)),
                               ("approve", f.approve), ("restore", (f.restore,))):
            for value in values:
                if value is None:
                    continue
                for span in HISTOGRAM_SPANS:
                    bucket = self.histograms[(span, spans[span], f.runbook_id, metric,
                                              bucket_of(value))]
                    bucket[0] += 1
                    bucket[1] += value

    def statements(self, dialect: str) -> list[tuple[Any, list[dict[str, Any]]]]:
        """Upserts that add these sums to the stored rows, with their rows, keys in order (so
        that two transactions lock shared rows in the same order). Each statement is one
        compiled, cached upsert run over its rows (executemany), whatever their number."""
        counters, histograms = _upserts(dialect)
        out = []
        if self.counters:
            out.append((counters, [
                {"span": k[0], "start": k[1], "runbook_id": k[2], "runbook_version": k[3],
                 "status": k[4], **dict(zip(_COUNTERS, v, strict=True))}
                for k, v in sorted(self.counters.items())]))
        if self.histograms:
            out.append((histograms, [
                {"span": k[0], "start": k[1], "runbook_id": k[2], "metric": k[3],
                 "bucket": k[4], "count": int(v[0]), "total": v[1]}
                for k, v in sorted(self.histograms.items())]))
        return out


_UPSERTS: dict[str, tuple[Any, Any]] = {}


def _upserts(dialect: str) -> tuple[Any, Any]:
    if dialect not in _UPSERTS:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        counters = insert(StatsRollup)
        histograms = insert(StatsHistogram)
        _UPSERTS[dialect] = (
            counters.on_conflict_do_update(
                index_elements=["span", "start", "runbook_id", "runbook_version", "status"],
                set_={c: getattr(StatsRollup, c) + getattr(counters.excluded, c)
                      for c in _COUNTERS}),
            histograms.on_conflict_do_update(
                index_elements=["span", "start", "runbook_id", "metric", "bucket"],
                set_={"count": StatsHistogram.count + histograms.excluded.count,
                      "total": StatsHistogram.total + histograms.excluded.total}))
    return _UPSERTS[dialect]


# Versions are immutable (the id is the content's hash), and an execution's version is stored
# before it starts: the objectives of a version, or its absence, can be kept.
_objectives_cache: dict[tuple[str, str], Objectives] = {}


async def version_objectives(session: AsyncSession, runbook_id: str,
                             version: str) -> Objectives:
    key = (runbook_id, version)
    if key not in _objectives_cache:
        content = (await session.execute(
            select(RunbookVersion.content).where(RunbookVersion.runbook_id == runbook_id,
                                                 RunbookVersion.version == version)
        )).scalar_one_or_none()
        if len(_objectives_cache) > 4096:
            _objectives_cache.clear()
        _objectives_cache[key] = objectives_of(content)
    return _objectives_cache[key]


# Set by a transaction that settles its ended executions itself, once, before it commits
# (a round of decisions): the executions that ended in it, waiting to be rolled up.
_DEFERRED = "runbookd.finals"


def defer_finals(session: AsyncSession) -> None:
    """Roll the executions that end in this transaction up together, at `settle_finals`."""
    session.info[_DEFERRED] = []


async def record_final(session: AsyncSession, execution: Execution) -> None:
    """Add an execution that just ended to its rollups (the final transition's hook), now
    or, in a transaction that defers them, at its `settle_finals`."""
    deferred = session.info.get(_DEFERRED)
    if deferred is not None:
        deferred.append(execution)
        return
    await _roll_up(session, [execution])


async def settle_finals(session: AsyncSession) -> None:
    """Roll up the executions deferred in this transaction, in one statement per table."""
    ended = session.info.pop(_DEFERRED, None)
    if ended:
        await _roll_up(session, ended)


async def _roll_up(session: AsyncSession, ended: list[Execution]) -> None:
    where = StepRun.execution_id.in_([execution.id for execution in ended])
    step_rows = (await session.execute(step_times_query(where))).all()
    awaited = any(row[4] for row in step_rows)
    wait_rows = (await session.execute(approval_waits_query(where))).all() if awaited else []
    times = step_times_of(step_rows, wait_rows)
    sums = Sums()
    for execution in ended:
        objectives = await version_objectives(session, execution.runbook_id,
                                              execution.runbook_version)
        sums.add(facts(execution, times.get(execution.id, StepTimes()), objectives))
    for stmt, rows in sums.statements(session.bind.dialect.name):
        await session.execute(stmt, rows)


def backfill(conn: Connection, *, batch: int = 50_000) -> int:
    """Roll up every execution that ended before the rollups existed; returns how many."""
    objectives = {(rid, version): objectives_of(content) for rid, version, content in conn.execute(
        select(RunbookVersion.runbook_id, RunbookVersion.version, RunbookVersion.content))}
    dialect = conn.dialect.name
    done, after = 0, 0
    while True:
        ids = select(Execution.id).where(
            Execution.id > after, Execution.status.in_(states.FINAL_EXECUTION)
        ).order_by(Execution.id).limit(batch)
        # Named columns: the migration that runs this must not ask for columns added later.
        rows = conn.execute(select(
            Execution.id, Execution.runbook_id, Execution.runbook_version, Execution.status,
            Execution.created_at, Execution.finished_at, Execution.alert_fired_at,
            Execution.alerts_resolved_at).where(
            Execution.id.in_(ids.scalar_subquery())).order_by(Execution.id)).all()
        if not rows:
            return done
        in_batch = StepRun.execution_id.in_(ids.scalar_subquery())
        times = step_times_of(conn.execute(step_times_query(in_batch)).all(),
                              conn.execute(approval_waits_query(in_batch)).all())
        sums = Sums()
        for execution in rows:
            sums.add(facts(execution, times.get(execution.id, StepTimes()),
                           objectives.get((execution.runbook_id, execution.runbook_version),
                                          (None, None))))
        for stmt, values in sums.statements(dialect):
            conn.execute(stmt, values)
        done += len(rows)
        after = rows[-1].id


def histograms_from_days(conn: Connection) -> int:
    """Write the week and month histogram rows from the day rows, replacing any; returns how
    many day rows were read. Migration 0012 runs it: the day rows already hold every ended
    execution's timings, bucketed, and a week or a month is a sum of whole days. One month of
    day rows is read at a time, so memory holds a month's sums and the weeks that overlap it."""
    h = StatsHistogram
    conn.execute(h.__table__.delete().where(h.span.in_([WEEK, MONTH])))
    first, last = conn.execute(select(func.min(h.start), func.max(h.start))
                               .where(h.span == DAY)).one()
    done = 0
    month = month_of(first) if first else None
    weeks: dict[tuple[str, dt.datetime, str, str, int], list[float]] = defaultdict(
        lambda: [0, 0.0])
    while month is not None and month <= last:
        following = (month + dt.timedelta(days=31)).replace(day=1)
        sums = Sums()
        for start, runbook_id, metric, bucket, count, total in conn.execute(
                select(h.start, h.runbook_id, h.metric, h.bucket, h.count, h.total)
                .where(h.span == DAY, h.start >= month, h.start < following)):
            for into in (sums.histograms[(MONTH, month, runbook_id, metric, bucket)],
                         weeks[(WEEK, week_of(start), runbook_id, metric, bucket)]):
                into[0] += count
                into[1] += total
            done += 1
        # Weeks that end by the next month's start have all their days now.
        for key in [k for k in weeks if k[1] + dt.timedelta(days=7) <= following]:
            sums.histograms[key] = weeks.pop(key)
        for stmt, rows in sums.statements(conn.dialect.name):
            conn.execute(stmt, rows)
        month = following
    rest = Sums()
    rest.histograms.update(weeks)
    for stmt, rows in rest.statements(conn.dialect.name):
        conn.execute(stmt, rows)
    return done
