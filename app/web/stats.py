"""The stats page: is time to restore getting better? Charts over `compute_stats` (the
same numbers as GET /api/v1/stats) and the outcomes per day or week."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from markupsafe import Markup

from app.db import SessionDep, utcnow
from app.errors import Invalid
from app.history.stats import RunbookStats, StatsOut, compute_stats
from app.history.trends import Bucket, choose_period, outcomes_over_time
from app.web.charts import (
    APPROVED,
    AUTOMATIC,
    STATUS_COLOURS,
    Segment,
    TimingRow,
    split_bars,
    stacked_columns,
    timing_bars,
)
from app.web.drills import drill_table
from app.web.pages import HtmlRoute, render, require_identity

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)

# Outcomes that mean the automation did not restore service by itself.
FAILURES = ("failed", "expired", "needs_attention")
# Stack order, bottom up: the good news first.
STACK = ("succeeded", "cancelled", "rejected", "expired", "failed", "needs_attention",
         "awaiting_approval", "rate_limited", "paused", "running", "pending")
DEFAULT_DAYS = 30
DayText = Annotated[str | None, Query(max_length=32)]


@dataclass(frozen=True)
class Charts:
    restore: Markup | None
    outcomes: Markup | None
    automation: Markup | None
    approval_wait: Markup | None
    failing: Markup | None


def _day(value: str | None, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{field} must be a date written like 2026-12-01",
                      details=[{"field": field, "message": "not a date"}]) from None


def window(since: dt.date | None, until: dt.date | None,
           now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The chosen days as [since 00:00, the day after until 00:00) in UTC; by default the
    last 30 days up to now."""
    end = (dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC) if until
           else now)
    start = (dt.datetime.combine(since, dt.time(), dt.UTC) if since
             else end - dt.timedelta(days=DEFAULT_DAYS))
    if start >= end:
        raise Invalid("since must be on or before until",
                      details=[{"field": "since", "message": "after until"}])
    return start, end


def build_charts(stats: StatsOut, buckets: list[Bucket], *, weekly: bool) -> Charts:
    books = stats.runbooks
    restore = [TimingRow(rid, s.time_to_restore_seconds.p50, s.time_to_restore_seconds.p90,
                         s.time_to_restore_seconds.count, s.restore_objective.objective_seconds)
               for rid, s in books.items() if s.time_to_restore_seconds.count]
    waits = [TimingRow(rid, s.time_to_approve_seconds.p50, s.time_to_approve_seconds.p90,
                       s.time_to_approve_seconds.count)
             for rid, s in books.items() if s.time_to_approve_seconds.count]
    automation = [(rid, [Segment("automatic", s.automatic, AUTOMATIC),
                         Segment("approved", s.needed_approval, APPROVED)])
                  for rid, s in books.items() if s.executions]
    failing = sorted(((rid, s) for rid, s in books.items() if _failures(s)),
                     key=lambda item: (-_failures(item[1]), item[0]))[:10]
    columns = [(b.start, [Segment(name, b.counts.get(name, 0), STATUS_COLOURS.get(name, "#888"))
                          for name in _stack_order(buckets)]) for b in buckets]
    return Charts(
        restore=timing_bars("Time to restore per runbook: p50 and p90 against the objective",
                            restore) if restore else None,
        outcomes=stacked_columns(f"Outcomes per {'week' if weekly else 'day'}", columns,
                                 weekly=weekly) if any(b.total for b in buckets) else None,
        automation=split_bars("Automatic versus approved executions per runbook", automation,
                              legend=[("automatic", AUTOMATIC), ("approved", APPROVED)])
        if automation else None,
        approval_wait=timing_bars("Time waiting for approval per runbook: p50 and p90", waits)
        if waits else None,
        failing=split_bars("Runbooks that fail most", [
            (rid, [Segment(o.replace("_", " "), s.outcomes.get(o, 0), STATUS_COLOURS[o])
                   for o in FAILURES]) for rid, s in failing],
            legend=[(o.replace("_", " "), STATUS_COLOURS[o]) for o in FAILURES])
        if failing else None,
    )


def _failures(s: RunbookStats) -> int:
    return sum(s.outcomes.get(o, 0) for o in FAILURES)


def _stack_order(buckets: list[Bucket]) -> list[str]:
    seen = {name for b in buckets for name in b.counts}
    return [n for n in STACK if n in seen] + sorted(seen - set(STACK))


@router.get("/stats")
async def stats_page(request: Request, session: SessionDep, runbook: str | None = None,
                     since: DayText = None, until: DayText = None,
                     period: Literal["auto", "day", "week"] = "auto") -> Response:
    """Charts of outcomes and timings, filtered by runbook and days."""
    require_identity(request)
    first, last = _day(since, "since"), _day(until, "until")
    start, end = window(first, last, utcnow())
    chosen = choose_period(start, end) if period == "auto" else period
    stats = await compute_stats(session, since=start, until=end, runbook=runbook or None)
    buckets = await outcomes_over_time(session, since=start, until=end, period=chosen,
                                       runbook=runbook or None)
    catalog = request.app.state.catalog.catalog
    return render(request, "stats.html", {
        "title": "Stats", "nav": "stats", "stats": stats,
        "charts": build_charts(stats, buckets, weekly=chosen == "week"),
        "runbooks": sorted(set(catalog.runbooks) | set(stats.runbooks)),
        "flt": {"runbook": runbook or "", "since": first.isoformat() if first else "",
                "until": last.isoformat() if last else "", "period": period},
        "shown_since": start, "shown_until": end, "period": chosen,
        "failures": FAILURES, "drills": await drill_table(session, catalog)})
