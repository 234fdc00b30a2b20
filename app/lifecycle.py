"""Start and stop every moving part of a runbookd process, in order.

Shared by the HTTP service (`create_app`'s lifespan) and `runbookd worker`, so both run the
same catalog, executor, worker, notification sender and retention job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.actions.registry import default_registry
from app.catalog.service import CatalogHolder
from app.catalog.signoff_reviews import review_round
from app.config import Settings
from app.db import make_engine, make_session_factory
from app.engine.drills_scheduler import DrillScheduler
from app.engine.executor import Executor
from app.engine.intake_hook import make_alert_hook
from app.engine.links import make_link_maker
from app.engine.runbooks import RunbookVersions
from app.engine.services import EngineRuntime
from app.engine.worker import Worker, new_worker_id
from app.errors import CatalogInvalid
from app.history.retention import PRUNE_EVERY, prune_round
from app.intake.auth import WebhookAuth
from app.intake.receiver import WebhookReceiver
from app.intake.redelivery import open_lane
from app.intake.writer import GroupCommitWriter
from app.notify.sender import NotificationSender
from app.outbound import OutboundHttp
from app.periodic import repeat

log = logging.getLogger("runbookd")

# The longest the executor waits at a time for the webhooks being stored in its process.
INTAKE_FIRST_SECONDS = 0.5


@dataclass
class Parts:
    db: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    catalog: CatalogHolder
    engine: EngineRuntime
    receiver: WebhookReceiver


def _tune_gc() -> None:
    """Collect cyclic garbage less often, and never rescan what start-up allocated.

    Every request allocates thousands of short-lived objects; with the default threshold
    (700) the collector runs hundreds of times a second and its pauses were the p99 of the
    webhook (about 90 ms). Measured in benchmarks/RESULTS.md.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Parts]:
    """Start the database, catalog, writer, worker and sender; stop them in reverse.

    An invalid catalog raises CatalogInvalid, listing every error: the process must not
    start with rules nobody reviewed.
    """
    settings.check_serviceable()
    db = make_engine(settings.database_url)
    factory = make_session_factory(db)
    http = OutboundHttp(settings.http_allowlist)
    registry = default_registry()
    holder = CatalogHolder(mappings_path=settings.mappings,
                           remediations_dir=settings.remediations_dir,
                           actions=registry.specs())
    try:
        await holder.initial_load(factory)
    except CatalogInvalid as exc:
        log.error("the catalog is invalid; refusing to start:\n  %s",
                  "\n  ".join(str(d) for d in (exc.details or [exc.message])))
        await http.aclose()
        await db.dispose()
        raise
    runbooks = RunbookVersions(lambda: holder.catalog)
    executor = Executor(settings=settings, session_factory=factory, registry=registry,
                        runbooks=runbooks, http=http, worker_id=new_worker_id())
    engine = EngineRuntime(settings=settings, session_factory=factory, registry=registry,
                           catalog=holder, runbooks=runbooks, http=http, executor=executor)
    if settings.worker_enabled:
        engine.worker = Worker(executor, session_factory=factory,
                               concurrency=settings.worker_concurrency,
                               lease_seconds=settings.lease_seconds,
                               poll_seconds=settings.poll_seconds,
                               single_process=settings.is_sqlite)
    # Due drills start where executions run: a process without a worker schedules none.
    drills = (DrillScheduler(session_factory=factory, catalog=lambda: holder.catalog,
                             runbooks=runbooks, worker_id=executor.me, wake=engine.wake)
              if settings.worker_enabled and settings.drill_check_seconds > 0 else None)
    hook = make_alert_hook(lambda: holder.catalog, runbooks, wake=engine.wake)
    writer = GroupCommitWriter(factory, hook=lambda: hook, max_batch=settings.ingest_batch_max,
                               # New alerts no runbook handles skip the hook (it would
                               # only note that): the lane stores them.
                               lane=open_lane(db, unmatched=lambda labels: not
                                              holder.catalog.match(labels)))
    # Webhooks first: the executor waits between its transactions while deliveries are
    # being stored, up to INTAKE_FIRST_SECONDS at a time (issue 17, target 3).
    executor.yield_to_intake = functools.partial(writer.until_idle, INTAKE_FIRST_SECONDS)
    receiver = WebhookReceiver(auth=WebhookAuth.from_settings(settings), writer=writer,
                               max_body_bytes=settings.max_body_bytes)
    # Approval requests carry a signed link to the confirmation page.
    sender = NotificationSender(settings, factory, http,
                                link_maker=make_link_maker(settings, factory, runbooks))

    _tune_gc()
    # Each part stops in reverse, and a stop that fails or is cancelled (a shutdown cut
    # short) does not leave the later ones running: a sender left behind would go on
    # delivering from a process that is going away.
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(db.dispose)
        stack.push_async_callback(http.aclose)
        await sender.start()
        stack.push_async_callback(sender.stop)
        await writer.start()
        stack.push_async_callback(writer.stop)
        if engine.worker is not None:
            await engine.worker.start()
            stack.push_async_callback(engine.worker.stop,
                                      grace=settings.shutdown_grace_seconds)
        async with _rounds(settings, factory, holder, drills):
            yield Parts(db=db, session_factory=factory, catalog=holder, engine=engine,
                        receiver=receiver)


@contextlib.asynccontextmanager
async def _rounds(settings: Settings, factory: async_sessionmaker[AsyncSession],
                  holder: CatalogHolder,
                  drills: DrillScheduler | None) -> AsyncIterator[None]:
    """Rounds that run every so often for the life of the process (app.periodic.repeat)."""
    loops = []
    if settings.retention_days > 0:
        loops.append(repeat(functools.partial(prune_round, factory, days=settings.retention_days),
                            every=PRUNE_EVERY, what="retention", wait_first=False))
    if drills is not None:
        loops.append(repeat(drills.tick, every=settings.drill_check_seconds,
                            what="the drill scheduler"))
    if settings.review_check_seconds > 0:
        loops.append(repeat(functools.partial(review_round, factory, lambda: holder.catalog),
                            every=settings.review_check_seconds, what="the overdue-review check"))
    rounds = [asyncio.create_task(loop) for loop in loops]
    try:
        yield
    finally:
        for task in rounds:
            task.cancel()
        await asyncio.gather(*rounds, return_exceptions=True)
