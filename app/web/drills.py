"""What the pages show of drills: a runbook's last drill (with its per-step verdicts) and
schedule, and one row per drilled runbook on the stats page. Reads only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.loader import Catalog
from app.catalog.schema import DrillSpec, Runbook
from app.db import utcnow
from app.durations import format_duration
from app.engine.drills_models import FINISHED, RUNNING
from app.engine.drills_scheduler import next_due
from app.engine.drills_service import last_finished, latest_drills
from app.engine.drills_verdicts import headline


@dataclass(frozen=True)
class DrillView:
    runbook_id: str
    schedule: str | None  # `every 7d`, `cron 0 6 * * 1`; None: not scheduled
    next_due: dt.datetime | None
    finished_at: dt.datetime | None  # of the last finished drill
    ago: str  # "2 days ago"
    problems: int | None
    said: str  # "1 problem", "no problems"
    verdicts: list[dict[str, Any]]
    execution_id: int | None
    running_id: int | None  # a drill going on now, if any


def ago(then: dt.datetime, now: dt.datetime) -> str:
    """`just now`, `5 minutes ago`, `2 hours ago`, `3 days ago`."""
    seconds = max((now - then).total_seconds(), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def schedule_of(spec: DrillSpec | None) -> str | None:
    if spec is None:
        return None
    if spec.cron:
        return f"cron {spec.cron} (UTC)"
    assert spec.every is not None
    return f"every {format_duration(spec.every)}"


async def drill_view(session: AsyncSession, runbook: Runbook, *,
                     now: dt.datetime | None = None) -> DrillView:
    """The runbook page's drill section."""
    now = now or utcnow()
    rows = await latest_drills(session, runbook.id, limit=10)
    last = next((r for r in rows if r.phase == FINISHED), None)
    running = next((r for r in rows if r.phase == RUNNING), None)
    return _view(runbook.id, runbook.drill, last, running, now)


async def drill_table(session: AsyncSession, catalog: Catalog, *,
                      now: dt.datetime | None = None) -> list[DrillView]:
    """One row per runbook that has a drill schedule or was ever drilled (stats page)."""
    now = now or utcnow()
    last = await last_finished(session)
    ids = sorted({rid for rid, loaded in catalog.runbooks.items() if loaded.runbook.drill}
                 | set(last))
    out = []
    for rid in ids:
        loaded = catalog.runbooks.get(rid)
        out.append(_view(rid, loaded.runbook.drill if loaded else None, last.get(rid), None,
                         now))
    return out


def _view(runbook_id: str, spec: DrillSpec | None, last: Any, running: Any,
          now: dt.datetime) -> DrillView:
    return DrillView(
        runbook_id=runbook_id, schedule=schedule_of(spec),
        next_due=next_due(spec, now, runbook_id) if spec else None,
        finished_at=last.finished_at if last else None,
        ago=ago(last.finished_at, now) if last and last.finished_at else "",
        problems=last.problems if last else None,
        said=headline(last.problems) if last else "",
        verdicts=list(last.verdicts or []) if last else [],
        execution_id=last.execution_id if last else None,
        running_id=running.id if running else None)
