"""app.periodic.repeat: a round that fails is logged and tried again; the first round waits
one interval unless told not to; cancelling stops it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.periodic import repeat


@pytest.mark.parametrize("wait_first", [True, False])
async def test_a_failed_round_is_logged_and_the_next_one_runs(caplog, wait_first):
    rounds: list[float] = []
    third = asyncio.Event()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def tick() -> None:
        rounds.append(loop.time() - start)
        if len(rounds) == 3:
            third.set()
        if len(rounds) == 1:
            raise RuntimeError("database away")

    task = asyncio.create_task(repeat(tick, every=0.05, what="the test round",
                                      wait_first=wait_first))
    with caplog.at_level(logging.ERROR, logger="app.periodic"):
        await asyncio.wait_for(third.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (rounds[0] >= 0.05) is wait_first
    said = [r.getMessage() for r in caplog.records]
    assert said == ["the test round failed; trying again in 0.05s"]
    assert caplog.records[0].exc_info[0] is RuntimeError
