"""A shutdown that is cut short (a stop that hangs, then the lifespan is cancelled) still stops
the parts after it: a notification sender left behind keeps delivering from a process that is
going away (and, in the test suite's shared event loop, took the next tests' notifications)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from app.engine.rounds import Rounds
from app.engine.worker import Worker
from app.intake.writer import GroupCommitWriter
from app.lifecycle import running
from app.notify.sender import NotificationSender


async def test_a_shutdown_cut_short_still_stops_the_sender(make_settings, monkeypatch):
    senders: list[NotificationSender] = []
    real_start = NotificationSender.start

    async def recorded_start(self: NotificationSender) -> None:
        senders.append(self)
        await real_start(self)

    real_stop = GroupCommitWriter.stop

    async def hanging_stop(self: GroupCommitWriter) -> None:
        try:
            await asyncio.sleep(3600)
        finally:  # cut short: the writer itself stops, so that this test leaks nothing
            await real_stop(self)

    monkeypatch.setattr(NotificationSender, "start", recorded_start)
    monkeypatch.setattr(GroupCommitWriter, "stop", hanging_stop)
    shutting_down = asyncio.Event()

    async def serve() -> None:
        async with running(make_settings(worker_enabled=False)):
            shutting_down.set()

    task = asyncio.create_task(serve())
    await asyncio.wait_for(shutting_down.wait(), 30)
    await asyncio.sleep(0.2)  # the lifespan is now in the writer's stop, which hangs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [sender] = senders
    assert sender._task is not None and sender._task.done()


async def test_a_worker_stop_cut_short_cancels_its_drivers():
    """The worker's grace is for finishing steps; a stop that is itself cancelled stops
    them at once instead of leaving them stepping executions."""
    worker = Worker(SimpleNamespace(me="test-worker", rounds=Rounds(None)),  # type: ignore[arg-type]
                    session_factory=None,  # type: ignore[arg-type]
                    concurrency=1, lease_seconds=30, poll_seconds=1, single_process=True)
    driver = asyncio.create_task(asyncio.sleep(3600), name="drive-1")
    worker._drivers[1] = driver
    stopping = asyncio.create_task(worker.stop(grace=3600))
    await asyncio.sleep(0.1)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await asyncio.sleep(0)
    assert driver.cancelled()
