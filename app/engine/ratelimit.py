"""Durable rate limits, counted from the database: per (runbook, target) for whole
executions, and per key for a step (a budget that steps of several runbooks may share).

Counting what started inside each window, rather than keeping counters in memory, is what
makes a limit survive restarts and hold across replicas. A cancelled execution spent
nothing that counts; a skipped step never started.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import RateLimit
from app.durations import format_duration
from app.engine import states
from app.engine.models import Execution, StepRun


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: RateLimit | None = None
    next_allowed_at: dt.datetime | None = None

    key: str | None = None

    def describe(self) -> str:
        if self.allowed or self.limit is None or self.next_allowed_at is None:
            return "allowed"
        budget = f" for {self.key}" if self.key else ""
        return (f"rate limit of {self.limit.count} per {format_duration(self.limit.per)}"
                f"{budget} reached; next run allowed at "
                f"{self.next_allowed_at.isoformat(timespec='seconds')}")


async def executions_spent(
    session: AsyncSession, *, runbook_id: str, target: str, limit: RateLimit,
    now: dt.datetime, exclude_id: int | None = None,
) -> tuple[int, dt.datetime | None]:
    """How many real executions of (runbook, target) count in the window of `limit`, and
    when the oldest of them started."""
    query = select(func.count(), func.min(Execution.started_at)).where(
        Execution.runbook_id == runbook_id, Execution.target == target,
        Execution.started_at >= now - limit.per, Execution.dry_run.is_(False),
        Execution.status != states.CANCELLED,
    )
    if exclude_id is not None:
        query = query.where(Execution.id != exclude_id)
    count, oldest = (await session.execute(query)).one()
    return count, oldest


async def steps_spent(session: AsyncSession, *, key: str, limit: RateLimit, now: dt.datetime,
                      exclude_id: int | None = None) -> tuple[int, dt.datetime | None]:
    """How many step runs spent the budget `key` in the window of `limit`, and when the
    oldest of them started."""
    query = select(func.count(), func.min(StepRun.started_at)).where(
        StepRun.rate_key == key, StepRun.started_at >= now - limit.per)
    if exclude_id is not None:
        query = query.where(StepRun.id != exclude_id)
    count, oldest = (await session.execute(query)).one()
    return count, oldest


async def check_rate(
    session: AsyncSession, *, runbook_id: str, target: str, limits: list[RateLimit],
    now: dt.datetime, exclude_id: int | None = None,
) -> Verdict:
    """Whether one more real (non-drill) execution may start now."""
    for limit in limits:
        count, oldest = await executions_spent(session, runbook_id=runbook_id, target=target,
                                               limit=limit, now=now, exclude_id=exclude_id)
        if count >= limit.count:
            # The oldest start in the window leaves it first; with count > limit (a lowered
            # limit), this is an early estimate, and the check simply runs again then.
            return Verdict(False, limit, (oldest or now) + limit.per)
    return Verdict(True)


async def check_step_rate(session: AsyncSession, *, key: str, limits: list[RateLimit],
                          now: dt.datetime, exclude_id: int | None = None) -> Verdict:
    """Whether a step spending the budget `key` may start now."""
    for limit in limits:
        count, oldest = await steps_spent(session, key=key, limit=limit, now=now,
                                          exclude_id=exclude_id)
        if count >= limit.count:
            return Verdict(False, limit, (oldest or now) + limit.per, key=key)
    return Verdict(True, key=key)


async def lock_budget(session: AsyncSession, key: str) -> None:
    """Hold the budget `key` until the transaction ends, so that two replicas cannot both
    see one run left and both spend it. SQLite has a single writer already."""
    if session.bind.dialect.name != "postgresql":
        return
    lock_id = int.from_bytes(hashlib.sha256(f"rate:{key}".encode()).digest()[:8], "big",
                             signed=True)
    await session.execute(select(func.pg_advisory_xact_lock(lock_id)))
