"""Retention: prune what is older than `RUNBOOKD_RETENTION_DAYS`.

An execution goes whole or not at all: an ended execution older than the cutoff is deleted
with its steps, approvals, events, alert links, notifications and approval links, so a kept
execution always keeps its complete audit chain, and an active one is never touched. Events
that belong to no execution (guard changes, reloads), deliveries, and alerts no kept
execution refers to go by age. Raw alert payloads older than the cutoff are cleared first.
The stats rollups stay on purpose: they hold sums, no audit data, and keep a year of stats
readable past a shorter retention (app/engine/rollup_models.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import delete, exists, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import session_scope, utcnow
from app.engine import states
from app.engine.models import Approval, ApprovalLink, Execution, ExecutionAlert, StepRun
from app.events import Event
from app.intake.models import Alert, Delivery
from app.notify.models import Notification

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneResult:
    executions: int
    events: int
    alerts: int
    deliveries: int
    payloads_cleared: int


async def prune(session: AsyncSession, *, older_than: dt.datetime,
                batch: int = 5000) -> PruneResult:
    """Delete one batch of history older than `older_than`; call again until it returns 0s."""
    ids = list((await session.execute(
        select(Execution.id).where(Execution.status.in_(states.FINAL_EXECUTION),
                                   Execution.finished_at < older_than)
        .order_by(Execution.id).limit(batch)
    )).scalars())
    events = 0
    if ids:
        for model in (Approval, ApprovalLink, Notification, StepRun, ExecutionAlert):
            await session.execute(delete(model).where(model.execution_id.in_(ids)))
        events += (await session.execute(
            delete(Event).where(Event.execution_id.in_(ids)))).rowcount or 0
        await session.execute(delete(Execution).where(Execution.id.in_(ids)))
    events += (await session.execute(
        delete(Event).where(Event.execution_id.is_(None), Event.created_at < older_than)
    )).rowcount or 0
    cleared = (await session.execute(
        update(Alert).where(Alert.updated_at < older_than, Alert.raw.is_not(None))
        .values(raw=null())  # SQL NULL, not a JSON null
    )).rowcount or 0
    alerts = (await session.execute(
        delete(Alert).where(Alert.updated_at < older_than,
                            ~exists().where(ExecutionAlert.alert_id == Alert.id))
    )).rowcount or 0
    deliveries = (await session.execute(
        delete(Delivery).where(Delivery.received_at < older_than))).rowcount or 0
    return PruneResult(len(ids), events, alerts, deliveries, cleared)


async def prune_all(factory: async_sessionmaker[AsyncSession], *, days: int) -> int:
    """Prune in batches, one transaction each, until nothing old is left."""
    cutoff = utcnow() - dt.timedelta(days=days)
    total = 0
    while True:
        async with session_scope(factory) as session:
            result = await prune(session, older_than=cutoff)
        total += result.executions + result.events + result.alerts + result.deliveries
        if not (result.executions or result.events or result.alerts or result.deliveries):
            return total


# How often the service prunes (hourly: a day's rows are a small delete each time).
PRUNE_EVERY = 3600.0


async def prune_round(factory: async_sessionmaker[AsyncSession], *, days: int) -> None:
    """One pruning pass (the service runs it at start, then every PRUNE_EVERY seconds)."""
    removed = await prune_all(factory, days=days)
    if removed:
        log.info("retention: pruned %d rows older than %d days", removed, days)
