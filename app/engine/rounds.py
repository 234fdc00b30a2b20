"""Decisions of several executions in one transaction (issue 17, target 4).

Every step of every execution is decided in a transaction that locks the execution, reads
its step runs and the guards, writes the changes and their events, and commits. Those
transactions are alike and short, and under a storm many drivers want one at the same time.
`Rounds` lets the drivers that are waiting share one: it locks their executions in one
statement (in id order, the order every writer uses), reads and locks their step runs in one
more, and runs each driver's decision in turn on the same session. Their events go in as
one insert and their ended executions into the stats rollups together, and the round commits
once. New step runs take their ids up front (`transitions.add_step_run`), so most decisions
run no query, and the round's writes to each table go in together at the next flush (an
execution's first start still flushes, for its concurrency count).

Nothing changes for the decisions themselves: each still gets its execution locked, every
change still goes through `transitions`, and its events commit with it. A decision that
raises takes the round's transaction down with it, so the round is run again one decision
per transaction, and only the failing one gets the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import logs
from app.db import session_scope
from app.engine.models import Execution, StepRun
from app.engine.rollups import defer_finals, settle_finals
from app.engine.transitions import NEW_RUNS_HINT, remember_locked, remember_step_runs
from app.errors import NotFound, Unavailable, is_database_unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Decide = Callable[[AsyncSession, Execution], Awaitable[T]]


@dataclass
class _Request(Generic[T]):
    execution_id: int
    decide: Decide[T]
    future: asyncio.Future[T] = field(repr=False)


class Rounds:
    """Runs the decisions that drivers submit, those waiting at once in one transaction."""

    def __init__(self, factory: async_sessionmaker[AsyncSession], *, limit: int = 64) -> None:
        self.factory = factory
        self.limit = limit
        self._queue: list[_Request[Any]] = []
        # One round at a time: the next one takes every decision that queued meanwhile.
        self._pump: asyncio.Task[None] | None = None

    async def run(self, execution_id: int, decide: Decide[T]) -> T:
        """`decide(session, execution)` with the execution locked, in a transaction that
        commits before this returns; its result, or its error."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(execution_id, decide, future))
        if self._pump is None or self._pump.done():
            # A task, not a call: the drivers made ready in this turn of the loop queue
            # their decisions before the round starts, and share it.
            self._pump = asyncio.create_task(self._drain(), name="executor-rounds")
        return await future

    async def close(self) -> None:
        """Wait for the round in progress (a stopping worker's drivers are gone)."""
        if self._pump is not None:
            await asyncio.gather(self._pump, return_exceptions=True)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:self.limit], self._queue[self.limit:]
            # A driver cancelled while waiting (shutdown, lease lost) wants nothing done.
            batch = [r for r in batch if not r.future.done()]
            if batch:
                await self._round(batch)

    async def _round(self, batch: list[_Request[Any]]) -> None:
        try:
            outcomes = await self._together(batch)
        except asyncio.CancelledError:
            for request in batch:
                request.future.cancel()
            raise
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, Unavailable) or is_database_unavailable(exc):
                for request in batch:
                    _settle(request, exc)
                return
            log.info("a round of %d decisions failed (%s); deciding each on its own",
                     len(batch), type(exc).__name__)
            for request in batch:
                await self._round([request])
            return
        for request, outcome in zip(batch, outcomes, strict=True):
            _settle(request, outcome)

    async def _together(self, batch: list[_Request[Any]]) -> list[Any]:
        ids = sorted({r.execution_id for r in batch})
        async with session_scope(self.factory) as session:
            executions = {e.id: e for e in (await session.execute(
                select(Execution).where(Execution.id.in_(ids)).order_by(Execution.id)
                .with_for_update().execution_options(populate_existing=True)
            )).scalars()}
            for execution in executions.values():
                remember_locked(session, execution)
            # Locked after their executions, as every writer does: the step's record and the
            # next decision then read them from memory.
            runs = (await session.execute(
                select(StepRun).where(StepRun.execution_id.in_(list(executions)))
                .order_by(StepRun.id).with_for_update()
                .execution_options(populate_existing=True)
            )).scalars().all()
            remember_step_runs(session, list(executions), runs)
            # Most decisions add one step run: their ids are taken in one statement.
            session.info[NEW_RUNS_HINT] = len(batch)
            defer_finals(session)
            outcomes: list[Any] = []
            for request in batch:
                execution = executions.get(request.execution_id)
                if execution is None:
                    outcomes.append(NotFound(f"execution {request.execution_id} does not exist"))
                    continue
                with logs.context(execution_id=request.execution_id):
                    outcomes.append(await request.decide(session, execution))
            # The executions that ended in the round go into the stats rollups together.
            await settle_finals(session)
        return outcomes


def _settle(request: _Request[Any], outcome: Any) -> None:
    if request.future.done():  # its driver was cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        request.future.set_exception(outcome)
    else:
        request.future.set_result(outcome)
