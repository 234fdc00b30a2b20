"""The worker: claims runnable executions with a lease and drives each in its own task.

Claims use `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (the pattern of Airflow's HA
scheduler) and a conditional UPDATE everywhere, so two replicas never hold one execution.
A heartbeat extends the leases; an expired lease frees the execution for any replica, whose
executor then finds the interrupted step and applies invariant 4. The worker wakes at once
when this process commits new work, and otherwise polls every `poll_seconds` for timers and
for work committed by other replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import uuid

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.db import session_scope, utcnow
from app.engine import states
from app.engine.escalation import process_due_approvals
from app.engine.executor import Executor
from app.engine.models import Execution
from app.errors import LeaseLost, Unavailable, is_database_unavailable

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self, executor: Executor, *, session_factory: async_sessionmaker[AsyncSession],
        concurrency: int, lease_seconds: float, poll_seconds: float, single_process: bool,
    ) -> None:
        self.executor = executor
        self.factory = session_factory
        self.me = executor.me
        self.concurrency = concurrency
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.single_process = single_process
        self._wake = asyncio.Event()
        self._drivers: dict[int, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def wake(self) -> None:
        """New work was committed: look for it now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        if self.single_process:
            await self._release_stale_leases()
        self._tasks = [asyncio.create_task(self._loop(), name="worker-loop"),
                       asyncio.create_task(self._heartbeat(), name="worker-heartbeat")]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let running steps finish for `grace` seconds, then cancel."""
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        try:
            await self._stop_drivers(grace)
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            # Even when the shutdown is cut short: a round left running would hold its
            # transaction open in a loop that may never run it to the end.
            await self.executor.rounds.close()

    async def _stop_drivers(self, grace: float) -> None:
        drivers = list(self._drivers.values())
        if not drivers:
            return
        pending = set(drivers)
        try:
            _, pending = await asyncio.wait(drivers, timeout=grace)
        finally:
            # After the grace, or at once when the shutdown itself is cut short: a driver
            # left running would go on stepping executions from a process going away.
            for task in pending:
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self) -> None:
        timers_due = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            try:
                await self._claim_and_drive()
                # Timers need no wake-up of their own: once per poll interval is on time.
                if loop.time() >= timers_due:
                    timers_due = loop.time() + self.poll_seconds
                    await process_due_approvals(self.executor.factory, self.executor.runbooks)
            except Exception as exc:
                if is_database_unavailable(exc) or isinstance(exc, Unavailable):
                    log.warning("worker: database unavailable; retrying")
                else:
                    log.exception("worker loop error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    async def _claim_and_drive(self) -> None:
        free = self.concurrency - len(self._drivers)
        if free <= 0:
            return
        await self.executor.yield_to_intake()
        for execution_id in await self._claim(free):
            task = asyncio.create_task(self._drive(execution_id), name=f"drive-{execution_id}")
            self._drivers[execution_id] = task

    async def _claim(self, limit: int) -> list[int]:
        now = utcnow()
        claimable = and_(
            or_(Execution.lease_owner.is_(None), Execution.lease_expires_at < now),
            or_(
                and_(Execution.status == states.PENDING,
                     or_(Execution.wake_at.is_(None), Execution.wake_at <= now)),
                and_(Execution.status == states.RATE_LIMITED, Execution.wake_at <= now),
                Execution.status == states.RUNNING,
            ),
        )
        async with session_scope(self.factory) as session:
            candidates = (await session.execute(
                select(Execution.id).where(claimable)
                .where(Execution.id.not_in(list(self._drivers) or [-1]))
                .order_by(Execution.created_at).limit(limit)
                .with_for_update(skip_locked=True)
            )).scalars().all()
            if not candidates:
                return []
            # Conditional, so that even without row locks (SQLite) only one claim wins.
            claimed = set((await session.execute(
                update(Execution).where(Execution.id.in_(candidates), claimable)
                .values(lease_owner=self.me, lease_expires_at=now + self.lease,
                        heartbeat_at=now)
                .returning(Execution.id)
            )).scalars().all())
        return [execution_id for execution_id in candidates if execution_id in claimed]

    async def _drive(self, execution_id: int) -> None:
        released = False
        try:
            released = await self.executor.drive(execution_id)
        except asyncio.CancelledError:
            raise
        except LeaseLost as exc:
            # Another replica took the execution over: expected, not an executor error.
            log.warning("execution %s: lease lost (%s); stopping its driver", execution_id,
                        exc.message)
        except Exception as exc:
            if is_database_unavailable(exc) or isinstance(exc, Unavailable):
                log.warning("execution %s: database unavailable; will retry", execution_id)
            else:
                log.exception("execution %s: executor error", execution_id)
        finally:
            self._drivers.pop(execution_id, None)
            if not released:  # the executor's last transaction usually gave it up
                with contextlib.suppress(Exception):
                    await self._release(execution_id)
            self._wake.set()

    async def _release(self, execution_id: int) -> None:
        async with session_scope(self.factory) as session:
            await session.execute(
                update(Execution).where(Execution.id == execution_id,
                                        Execution.lease_owner == self.me)
                .values(lease_owner=None, lease_expires_at=None)
            )

    async def _heartbeat(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stopping:
            await asyncio.sleep(interval)
            try:
                await self._extend_leases()
                await self._update_gauges()
            except Exception:
                log.warning("worker: heartbeat failed", exc_info=True)

    async def _extend_leases(self) -> None:
        held = list(self._drivers)
        if not held:
            return
        now = utcnow()
        async with session_scope(self.factory) as session:
            kept = set((await session.execute(
                update(Execution).where(Execution.id.in_(held),
                                        Execution.lease_owner == self.me)
                .values(lease_expires_at=now + self.lease, heartbeat_at=now)
                .returning(Execution.id)
            )).scalars().all())
        missing = set(held) - kept
        if not missing:
            return
        async with session_scope(self.factory) as session:
            owners = dict((await session.execute(
                select(Execution.id, Execution.lease_owner).where(Execution.id.in_(missing))
            )).all())
        for execution_id in missing:
            owner = owners.get(execution_id)
            if owner is None:
                # The execution ended (a final state clears the lease) or was released
                # between the heartbeat's snapshot and its update: its driver is finishing.
                continue
            # Another replica took it over: stop touching it.
            log.warning("execution %s: lease lost to %s; stopping its driver", execution_id,
                        owner)
            task = self._drivers.get(execution_id)
            if task is not None:
                task.cancel()

    async def _update_gauges(self) -> None:
        async with session_scope(self.factory) as session:
            active = (await session.execute(
                select(func.count()).select_from(Execution)
                .where(Execution.status.in_(states.ACTIVE_EXECUTION))
            )).scalar_one()
        metrics.executions_active.set(active)

    async def _release_stale_leases(self) -> None:
        """One process owns a SQLite database: leases left by a previous run are dead."""
        async with session_scope(self.factory) as session:
            await session.execute(
                update(Execution).where(Execution.lease_owner.is_not(None))
                .values(lease_owner=None, lease_expires_at=None)
            )
