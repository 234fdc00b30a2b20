"""wait: sleeps, can be cancelled, and a drill does not wait."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from app.actions.wait import Wait
from tests.support.action_ctx import make_ctx, run_action


async def test_waits() -> None:
    started = time.monotonic()
    result = await run_action(Wait(), make_ctx(), duration="200ms")
    assert time.monotonic() - started >= 0.2
    assert result.summary == "waited 200ms"


async def test_is_cancellable() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(Wait(), make_ctx(), duration="1h"), 0.05)
    assert time.monotonic() - started < 1


async def test_dry_run_does_not_wait() -> None:
    started = time.monotonic()
    result = await run_action(Wait(), make_ctx(dry_run=True), duration="5m")
    assert result.summary == "would wait 5m"
    assert time.monotonic() - started < 0.5


def test_rejects_bad_durations() -> None:
    for bad in ("soon", "2d", "-1s"):
        with pytest.raises(ValidationError):
            Wait.Params.model_validate({"duration": bad})
