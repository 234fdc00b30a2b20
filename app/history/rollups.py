"""Reading the stats rollups (app/engine/rollup_models.py) for a window of creation times.

A window [since, until) splits into the whole hours inside it, which the rollups cover for
ended executions, and the minutes at either end, which are read execution by execution, as
are the executions of the whole hours that are still active (they are rolled up when they
end). The whole hours are read in the coarsest rows that fit: whole months inside them read
month rows, whole weeks around those week rows, then day rows, then hour rows at the edges.
The counters have no week or month rows (rollup_models.py), so they stop at days: a month is
at most 30 day rows and 46 hour rows per runbook for them, and for the histograms at most a
month or 4 week rows, 12 day rows and 46 hour rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.engine import states
from app.engine.models import Execution
from app.engine.rollup_models import DAY, HOUR, MONTH, WEEK, StatsHistogram, StatsRollup
from app.engine.rollups import day_of, hour_of, month_of, week_of

_HOUR = dt.timedelta(hours=1)


def _next_month(start: dt.datetime) -> dt.datetime:
    return (start + dt.timedelta(days=31)).replace(day=1)


# Coarse to fine: each span's start of a time, and the start of the next span after a start.
_SPANS = {MONTH: (month_of, _next_month),
          WEEK: (week_of, lambda start: start + dt.timedelta(days=7)),
          DAY: (day_of, lambda start: start + dt.timedelta(days=1))}


@dataclass(frozen=True)
class Cover:
    """The part of a window the rollups answer, and the parts read row by row."""

    rolled: tuple[dt.datetime, dt.datetime] | None
    raw: tuple[tuple[dt.datetime, dt.datetime], ...]


def cover(since: dt.datetime, until: dt.datetime) -> Cover:
    """Split [since, until) into whole hours and the minutes around them."""
    first = hour_of(since)
    first = first if first == since else first + _HOUR
    last = hour_of(until)
    if first >= last:
        return Cover(None, ((since, until),))
    raw = tuple((lo, hi) for lo, hi in ((since, first), (last, until)) if lo < hi)
    return Cover((first, last), raw)


def pieces(rolled: tuple[dt.datetime, dt.datetime], coarsest: str = MONTH,
           ) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """The whole hours `rolled` as (span, first start, end) ranges of rollup rows, each row
    inside them: the coarsest span's whole periods, and the finer spans around them, down to
    hours. The ranges are disjoint and together exactly `rolled`."""
    names = list(_SPANS)
    return _pieces(*rolled, names[names.index(coarsest):])


def _pieces(lo: dt.datetime, hi: dt.datetime,
            names: list[str]) -> list[tuple[str, dt.datetime, dt.datetime]]:
    if lo >= hi:
        return []
    if not names:
        return [(HOUR, lo, hi)]
    floor, following = _SPANS[names[0]]
    first, last = floor(lo), floor(hi)
    first = first if first == lo else following(first)
    if first >= last:
        return _pieces(lo, hi, names[1:])
    return [*_pieces(lo, first, names[1:]), (names[0], first, last),
            *_pieces(last, hi, names[1:])]


def spans(model: Any, rolled: tuple[dt.datetime, dt.datetime], coarsest: str) -> Any:
    """The condition on `model`'s rows that selects the whole hours `rolled` (see pieces)."""
    return or_(*(and_(model.span == span, model.start >= lo, model.start < hi)
                 for span, lo, hi in pieces(rolled, coarsest)))


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
        .where(spans(r, rolled, DAY), *([r.runbook_id == runbook] if runbook else []))
        .group_by(r.runbook_id, r.runbook_version, r.status)
    )).all()
    hist_rows = (await session.execute(
        select(h.runbook_id, h.metric, h.bucket, func.sum(h.count), func.sum(h.total))
        .where(spans(h, rolled, MONTH), *([h.runbook_id == runbook] if runbook else []))
        .group_by(h.runbook_id, h.metric, h.bucket)
    )).all()
    return [Counts(*row) for row in counter_rows], list(hist_rows)


async def outcomes_by_start(session: AsyncSession, rolled: tuple[dt.datetime, dt.datetime],
                            runbook: str | None) -> list[tuple[dt.datetime, str, int]]:
    """Ended executions per rollup row start (an hour or a day) and status."""
    r = StatsRollup
    return [(start, status, int(n)) for start, status, n in (await session.execute(
        select(r.start, r.status, func.sum(r.executions))
        .where(spans(r, rolled, DAY), *([r.runbook_id == runbook] if runbook else []))
        .group_by(r.start, r.status)
    )).all()]
