"""`wait`: pause a runbook for a while, e.g. to let a rollback take effect before a check."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import ClassVar

from pydantic import field_validator

from app.actions.base import ActionContext, ActionParams, ActionResult
from app.durations import Duration, format_duration

MAX_WAIT = dt.timedelta(days=1)


class WaitParams(ActionParams):
    duration: Duration

    @field_validator("duration")
    @classmethod
    def _bounded(cls, value: dt.timedelta) -> dt.timedelta:
        if not dt.timedelta(0) <= value <= MAX_WAIT:
            raise ValueError(f"duration must be between 0s and {format_duration(MAX_WAIT)}")
        return value


class Wait:
    name: ClassVar[str] = "wait"
    Params = WaitParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = "Waits for `duration` (e.g. 30s, 5m); cancellable."

    async def run(self, ctx: ActionContext, params: WaitParams) -> ActionResult:
        shown = format_duration(params.duration)
        if ctx.dry_run:
            return ActionResult(f"would wait {shown}", {"seconds": params.duration.total_seconds()})
        await asyncio.sleep(params.duration.total_seconds())
        return ActionResult(f"waited {shown}", {"seconds": params.duration.total_seconds()})
