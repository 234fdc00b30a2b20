"""Durable rate limits per (runbook, target), counted from the database.

Counting executions that started inside each window, rather than keeping counters in
memory, is what makes a limit survive restarts and hold across replicas.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import RateLimit
from app.engine.models import Execution


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: RateLimit | None = None
    next_allowed_at: dt.datetime | None = None

    def describe(self) -> str:
        if self.allowed or self.limit is None or self.next_allowed_at is None:
            return "allowed"
        seconds = int(self.limit.per.total_seconds())
        return (f"rate limit of {self.limit.count} per {seconds}s reached; next run allowed "
                f"at {self.next_allowed_at.isoformat(timespec='seconds')}")


async def check_rate(
    session: AsyncSession, *, runbook_id: str, target: str, limits: list[RateLimit],
    now: dt.datetime, exclude_id: int | None = None,
) -> Verdict:
    """Whether one more real (non-drill) execution may start now."""
    for limit in limits:
        since = now - limit.per
        query = select(func.count(), func.min(Execution.started_at)).where(
            Execution.runbook_id == runbook_id, Execution.target == target,
            Execution.started_at >= since, Execution.dry_run.is_(False),
        )
        if exclude_id is not None:
            query = query.where(Execution.id != exclude_id)
        count, oldest = (await session.execute(query)).one()
        if count >= limit.count:
            # The oldest start in the window leaves it first; with count > limit (a lowered
            # limit), this is an early estimate, and the check simply runs again then.
            return Verdict(False, limit, (oldest or now) + limit.per)
    return Verdict(True)
