"""Reading the stats rollups (app/engine/rollup_models.py) for a window of creation times.

A window [since, until) splits into the whole hours inside it, which the rollups cover for
ended executions, and the minutes at either end, which are read execution by execution, as
are the executions of the whole hours that are still active (they are rolled up when they
end). Whole days inside the whole hours read the day rows, the rest the hour rows: a month is
about 30 day rows and 46 hour rows per runbook.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.engine import states
from app.engine.models import Execution
from app.engine.rollup_models import DAY, HOUR, StatsHistogram, StatsRollup
from app.engine.rollups import day_of, hour_of

_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Cover:
    """The part of a window the rollups answer, and the parts read row by row."""

    rolled: tuple[dt.datetime, dt.datetime] | None
    raw: tuple[tuple[dt.datetime, dt.datetime], ...]


def _ceil(at: dt.datetime, floor: Any, step: dt.timedelta) -> dt.datetime:
    start = floor(at)
    return start if start == at else start + step


def cover(since: dt.datetime, until: dt.datetime) -> Cover:
    """Split [since, until) into whole hours and the minutes around them."""
    first, last = _ceil(since, hour_of, _HOUR), hour_of(until)
    if first >= last:
        return Cover(None, ((since, until),))
    raw = tuple((lo, hi) for lo, hi in ((since, first), (last, until)) if lo < hi)
    return Cover((first, last), raw)


def spans(model: Any, rolled: tuple[dt.datetime, dt.datetime]) -> Any:
    """The rollup rows that make up the whole hours `rolled`: day rows for whole days,
    hour rows around them."""
    first, last = rolled
    first_day, last_day = _ceil(first, day_of, _DAY), day_of(last)
    if first_day >= last_day:
        return and_(model.span == HOUR, model.start >= first, model.start < last)
    return or_(
        and_(model.span == DAY, model.start >= first_day, model.start < last_day),
        and_(model.span == HOUR, model.start >= first, model.start < first_day),
        and_(model.span == HOUR, model.start >= last_day, model.start < last))


def direct_ids(window: Cover, runbook: str | None) -> Any:
    """The ids of the executions to read one by one: all of those created in the minutes
    around the whole hours, and the active ones created in the whole hours."""
    by_runbook = [Execution.runbook_id == runbook] if runbook else []
    parts = [select(Execution.id).where(Execution.created_at >= lo, Execution.created_at < hi,
                                        *by_runbook) for lo, hi in window.raw]
    if window.rolled is not None:
        first, last = window.rolled
        parts.append(select(Execution.id).where(
            Execution.status.in_(sorted(states.ACTIVE_EXECUTION)),
            Execution.created_at >= first, Execution.created_at < last, *by_runbook))
    return parts[0] if len(parts) == 1 else union_all(*parts)


@dataclass(frozen=True)
class Counts:
    runbook_id: str
    runbook_version: str
    status: str
    executions: int
    needed_approval: int
    diagnose_measured: int
    diagnose_met: int
    restore_measured: int
    restore_met: int
    latest: dt.datetime  # the newest hour or day with this version


async def read(session: AsyncSession, rolled: tuple[dt.datetime, dt.datetime],
               runbook: str | None) -> tuple[list[Counts], list[Any]]:
    """Summed counters per runbook, version and status, and summed histogram buckets per
    runbook and metric: (runbook_id, metric, bucket, count, total) rows."""
    r, h = StatsRollup, StatsHistogram
    counter_rows = (await session.execute(
        select(r.runbook_id, r.runbook_version, r.status, func.sum(r.executions),
               func.sum(r.needed_approval), func.sum(r.diagnose_measured),
               func.sum(r.diagnose_met), func.sum(r.restore_measured), func.sum(r.restore_met),
               func.max(r.start))
        .where(spans(r, rolled), *([r.runbook_id == runbook] if runbook else []))
        .group_by(r.runbook_id, r.runbook_version, r.status)
    )).all()
    hist_rows = (await session.execute(
        select(h.runbook_id, h.metric, h.bucket, func.sum(h.count), func.sum(h.total))
        .where(spans(h, rolled), *([h.runbook_id == runbook] if runbook else []))
        .group_by(h.runbook_id, h.metric, h.bucket)
    )).all()
    return [Counts(*row) for row in counter_rows], list(hist_rows)


async def outcomes_by_start(session: AsyncSession, rolled: tuple[dt.datetime, dt.datetime],
                            runbook: str | None) -> list[tuple[dt.datetime, str, int]]:
    """Ended executions per rollup row start (an hour or a day) and status."""
    r = StatsRollup
    return [(start, status, int(n)) for start, status, n in (await session.execute(
        select(r.start, r.status, func.sum(r.executions))
        .where(spans(r, rolled), *([r.runbook_id == runbook] if runbook else []))
        .group_by(r.start, r.status)
    )).all()]
