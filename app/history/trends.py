"""Outcomes over time: executions per day or week, counted by status (the stats page's
stacked bars). The same window as `compute_stats`: created in [since, until)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.engine.models import Execution
from app.history import rollups

Period = Literal["day", "week"]


@dataclass(frozen=True)
class Bucket:
    start: dt.datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def bucket_start(at: dt.datetime, period: Period) -> dt.datetime:
    """The UTC midnight that starts `at`'s day, or the Monday that starts its week."""
    day = at.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - dt.timedelta(days=day.weekday()) if period == "week" else day


def choose_period(since: dt.datetime, until: dt.datetime) -> Period:
    """Days up to two months, weeks beyond: a chart of about 60 bars at most."""
    return "day" if until - since <= dt.timedelta(days=62) else "week"


async def outcomes_over_time(session: AsyncSession, *, since: dt.datetime, until: dt.datetime,
                             period: Period, runbook: str | None = None) -> list[Bucket]:
    """One bucket per day or week from `since` to `until`, empty ones included, so that a
    quiet day shows as a gap rather than disappearing."""
    # The stats rollups count the ended executions of the whole hours (an hour or a day per
    # row, never straddling a day); the rest are read row by row, as the stats read them.
    cover = rollups.cover(since, until)
    counts: dict[dt.datetime, Counter[str]] = {}
    for created, status in (await session.execute(
        select(Execution.created_at, Execution.status)
        .where(Execution.id.in_(rollups.direct_ids(cover, runbook)))
    )).all():
        counts.setdefault(bucket_start(created, period), Counter())[status] += 1
    if cover.rolled is not None:
        for start, status, n in await rollups.outcomes_by_start(session, cover.rolled, runbook):
            counts.setdefault(bucket_start(start, period), Counter())[status] += n
    step = dt.timedelta(days=7 if period == "week" else 1)
    out, at = [], bucket_start(since, period)
    while at < until:
        out.append(Bucket(at, dict(counts.get(at, {}))))
        at += step
    return out
