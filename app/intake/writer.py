"""Group commit: one writer task stores the deliveries of many requests per transaction.

Each request puts its envelope on a queue with a future and waits. The writer takes whatever
has queued up while the previous transaction ran, stores it in one transaction, commits, and
only then resolves every future. So a 2xx still means "committed", but the cost of a commit
is shared by the whole batch. There is no timer: under light load a batch is one request and
adds no latency. A batch the lane can store (redelivery.py) goes there; any other takes the
full path, in a session with the mapper hook.

A big delivery (more than `chunk_alerts` alerts) is stored in parts, each in a short
transaction of its own, and the writer serves whatever queued up between two parts: one
sender's 5,000 alerts must not hold every other sender's 2xx, nor SQLite's one write lock,
for the whole of its transaction. The first part stores the delivery row, with the whole
delivery's alert count; each later part adds what it made of its alerts to that row in the
transaction that stores them, so the row always tells what is committed. The 2xx waits for
the last part. If runbookd stops in between, the sender got no 2xx and sends the whole
delivery again, and what the parts stored counts as duplicates: no alert is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.db import session_scope
from app.errors import Invalid, Unavailable, is_data_error
from app.intake.normalize import Envelope
from app.intake.redelivery import Declined, RedeliveryLane
from app.intake.service import AlertHook, IngestResult, ingest_batch

log = logging.getLogger(__name__)

_Item = tuple[Envelope, asyncio.Future[IngestResult]]
_STOP = object()  # put on the queue to end the writer once everything before it is stored

# Alerts per part of a big delivery: about 50 ms of writing on this kind of machine
# (benchmarks/RESULTS.md, fairness), which is as long as a small delivery waits behind one.
CHUNK_ALERTS = 200


@dataclass(slots=True)
class _BigDelivery:
    """A delivery being stored in parts, and what its parts have stored so far."""

    envelope: Envelope
    future: asyncio.Future[IngestResult]
    done: int = 0  # alerts stored
    delivery_id: int | None = None
    new: int = 0
    changed: int = 0
    duplicate: int = 0


class GroupCommitWriter:
    """The single writer of webhook deliveries."""

    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], *,
        hook: Callable[[], AlertHook], max_batch: int = 256,
        lane: RedeliveryLane | None = None, chunk_alerts: int | None = None,
    ) -> None:
        self._factory = session_factory
        self._chunk = chunk_alerts or CHUNK_ALERTS
        self._big: deque[_BigDelivery] = deque()
        self._lane = lane
        self._lane_batches = metrics.ingest_batches.labels("lane")
        self._full_batches = metrics.ingest_batches.labels("full")
        self._hook = hook
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item | object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        self._idle = asyncio.Event()  # nothing queued or being written
        self._idle.set()

    async def start(self) -> None:
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def stop(self) -> None:
        """Stop taking work, store what is queued, then end the task."""
        self._accepting = False
        if self._task is None:
            return
        self._queue.put_nowait(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=30)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._lane is not None:
            await self._lane.close()

    def submit(self, envelope: Envelope) -> asyncio.Future[IngestResult]:
        """Queue one delivery; the future resolves once it is committed.

        A plain function returning the future, not a coroutine: one frame less for the
        request to suspend and resume through.
        """
        if not self._accepting:
            raise Unavailable("runbookd is shutting down; retry")
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((envelope, future))
        self._idle.clear()
        return future

    async def until_idle(self, at_most: float) -> None:
        """Wait until nothing is queued or being written, for at most `at_most` seconds.

        The executor in the same process calls this between its transactions: a webhook
        is answered only once its batch commits, so intake goes first, but a steady stream
        of deliveries must not hold the executor up for longer than `at_most` at a time.
        """
        if self._idle.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), at_most)

    async def _run(self) -> None:
        stopping = False
        while not stopping or self._big:
            batch: list[_Item] = []
            # With a big delivery in progress, take only what has queued: its next part waits.
            items = [] if self._big or stopping else [await self._queue.get()]
            while len(items) < self._max_batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            for item in items:
                if item is _STOP:
                    stopping = True
                elif self._is_big(item[0]):  # type: ignore[index]
                    envelope, future = item  # type: ignore[misc]
                    self._big.append(_BigDelivery(envelope, future))
                else:
                    batch.append(item)  # type: ignore[arg-type]
            if batch:
                metrics.ingest_batch_size.observe(len(batch))
                await self._write(batch)
            if self._big:
                await self._write_part(self._big[0])
            if self._queue.empty() and not self._big:
                self._idle.set()

    def _is_big(self, envelope: Envelope) -> bool:
        # A delivery id is looked up and remembered in one transaction: such a delivery (one
        # PagerDuty event) is never split.
        return len(envelope.alerts) > self._chunk and envelope.delivery_key is None

    async def _write_part(self, big: _BigDelivery) -> None:
        """Store the next part of the oldest big delivery; resolve it after the last."""
        env = big.envelope
        part = dataclasses.replace(env, alerts=env.alerts[big.done:big.done + self._chunk],
                                   alerts_total=len(env.alerts), delivery_id=big.delivery_id)
        done: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        await self._write([(part, done)])
        if done.exception() is not None:
            self._big.popleft()
            _fail(big.future, done.exception())  # type: ignore[arg-type]
            return
        result = done.result()
        big.delivery_id = result.delivery_id
        big.done += len(part.alerts)
        big.new += result.new
        big.changed += result.changed
        big.duplicate += result.duplicate
        if big.done < len(env.alerts):
            return
        self._big.popleft()
        if not big.future.done():
            big.future.set_result(IngestResult(
                delivery_id=big.delivery_id, received=len(env.alerts), new=big.new,
                changed=big.changed, duplicate=big.duplicate,
                truncated_alerts=env.truncated_alerts))

    async def _write(self, batch: list[_Item]) -> None:
        envelopes = [env for env, _ in batch]
        try:
            outcome = await self._lane.store(envelopes) if self._lane is not None else Declined()
            if isinstance(outcome, Declined):
                async with session_scope(self._factory) as session:
                    results = await ingest_batch(session, envelopes, hook=self._hook(),
                                                 known_states=outcome.states)
                self._full_batches.inc()
            else:
                results = outcome
                self._lane_batches.inc()
        except Unavailable as exc:
            # Whatever queued while this batch waited on a lost database would wait as long
            # again: answer it 503 now, so that senders retry instead of timing out.
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    self._queue.put_nowait(_STOP)
                    break
                batch.append(item)  # type: ignore[arg-type]
            for _, future in batch:
                _fail(future, exc)
            return
        except Exception as exc:
            if len(batch) > 1:
                # One bad delivery, or a race with another replica, must not fail the others:
                # store each on its own.
                log.warning("batch of %d failed (%s); storing one by one", len(batch),
                            type(exc).__name__)
                for item in batch:
                    await self._write([item])
                return
            if is_data_error(exc):
                # The body passed the schema but holds a value the database cannot store.
                log.warning("delivery refused by the database: %s", type(exc).__name__)
                exc = Invalid("a value in the body cannot be stored (a number too large for "
                              "the database, or text it cannot hold)")
            else:
                log.exception("delivery could not be stored")
            _fail(batch[0][1], exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail(future: asyncio.Future[IngestResult], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
