"""The drill scheduler: every `drill_check_seconds`, start each runbook's due drill.

Due times are a pure function of the schedule, the runbook's id and the clock, the same on
every replica: for `every: 7d` the latest multiple of seven days since the Unix epoch, shifted
by an offset within the period that the runbook's id fixes (so fourteen weekly runbooks do not
all drill the same Thursday midnight), for a cron line its latest firing (as written). Each
replica that sees a due time inserts the drill run of (runbook, due time) with
on-conflict-do-nothing; the one whose insert took starts the drill, in the same transaction.
Nothing lives only in memory: a replica that restarts, or a second one, finds the row. Only
the latest due time counts: drills missed while nothing ran are not made up one by one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.catalog.cron import parse_cron
from app.catalog.loader import Catalog
from app.catalog.schema import DrillSpec
from app.db import after_commit, session_scope, utcnow
from app.engine.drills_models import DrillRun
from app.engine.drills_service import last_finished, publish, settle_ended, start_drill
from app.engine.runbooks import RunbookVersions

log = logging.getLogger(__name__)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def spread(runbook_id: str, period: dt.timedelta) -> dt.timedelta:
    """A whole-second offset within `period`, fixed by the runbook's id (not random: every
    replica must compute the same due times)."""
    digest = int.from_bytes(hashlib.sha256(runbook_id.encode()).digest()[:8], "big")
    return dt.timedelta(seconds=digest % max(1, int(period.total_seconds())))


def latest_due(spec: DrillSpec, now: dt.datetime, runbook_id: str = "") -> dt.datetime:
    """The latest due time at or before `now` (an `every` spread by `runbook_id`)."""
    if spec.every is not None:
        step = spec.every.total_seconds()
        start = EPOCH + (spread(runbook_id, spec.every) if runbook_id else dt.timedelta())
        return start + dt.timedelta(seconds=(now - start).total_seconds() // step * step)
    assert spec.cron is not None
    return parse_cron(spec.cron).previous(now)


def next_due(spec: DrillSpec, now: dt.datetime, runbook_id: str = "") -> dt.datetime:
    """The first due time after `now`."""
    if spec.every is not None:
        return latest_due(spec, now, runbook_id) + spec.every
    assert spec.cron is not None
    return parse_cron(spec.cron).next_after(now)


class DrillScheduler:
    """Starts due drills; one per (runbook, due time) across every replica. The service
    calls `tick` every `drill_check_seconds` (app.periodic.repeat), one interval after start:
    a process that starts, or restarts in a crash loop, settles before it drills."""

    def __init__(self, *, session_factory: async_sessionmaker[AsyncSession],
                 catalog: Callable[[], Catalog], runbooks: RunbookVersions,
                 worker_id: str, wake: Callable[[], None]) -> None:
        self.factory = session_factory
        self.catalog = catalog
        self.runbooks = runbooks
        self.actor = f"scheduler:{worker_id}"
        self.wake = wake

    async def tick(self, now: dt.datetime | None = None) -> list[int]:
        """Start what is due now; settle drills whose execution ended elsewhere; refresh
        the drill gauges from the database. Returns the ids of the drill runs it started."""
        now = now or utcnow()
        started = []
        for loaded in self.catalog().runbooks.values():
            spec = loaded.runbook.drill
            if spec is None:
                continue
            async with session_scope(self.factory) as session:
                due_at = latest_due(spec, now, loaded.runbook.id)
                row = await start_drill(session, runbook=loaded.runbook,
                                        version=loaded.version, due_at=due_at,
                                        trigger="schedule", started_by=self.actor)
                if row is not None:
                    started.append(row.id)
                    after_commit(session, self.wake)
        async with session_scope(self.factory) as session:
            await settle_ended(session, self.runbooks.get)
        async with session_scope(self.factory) as session:
            publish_gauges(await last_finished(session))
        return started


def publish_gauges(last: dict[str, DrillRun]) -> None:
    """Set the drill gauges from each runbook's last finished drill run."""
    for runbook_id, row in last.items():
        if row.finished_at is not None:
            publish(runbook_id, row.finished_at, row.problems)
