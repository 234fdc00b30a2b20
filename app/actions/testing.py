"""Test actions shipped with the engine: `noop`, `sleep` and `fail`.

They let the executor, its guards and its crash recovery be exercised without touching a
real system, and they are handy in drills and in a runbook under construction.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from app.actions.base import ActionContext, ActionFailed, ActionParams, ActionResult


class NoopParams(ActionParams):
    message: str = ""
    output: dict[str, Any] = Field(default_factory=dict)
    # Append one line to this file per real run: lets tests count side effects.
    append_to: str | None = None


class Noop:
    name: ClassVar[str] = "noop"
    Params = NoopParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "Does nothing; returns `output` as its output."

    async def run(self, ctx: ActionContext, params: NoopParams) -> ActionResult:
        if ctx.dry_run:
            target = f" and append a line to {params.append_to}" if params.append_to else ""
            return ActionResult(f"would do nothing{target}", dict(params.output))
        if params.append_to:
            line = f"{ctx.execution_id} {ctx.step_id}\n"
            await asyncio.to_thread(_append, Path(params.append_to), line)
        return ActionResult(params.message or "nothing to do", dict(params.output))


def _append(path: Path, line: str) -> None:
    with path.open("a") as fh:
        fh.write(line)
        fh.flush()


class SleepParams(ActionParams):
    seconds: float = Field(ge=0, le=86_400)
    append_to: str | None = None


class Sleep:
    name: ClassVar[str] = "sleep"
    Params = SleepParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "Sleeps for `seconds`; cancellable."

    async def run(self, ctx: ActionContext, params: SleepParams) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(f"would sleep {params.seconds:g}s")
        if params.append_to:
            await asyncio.to_thread(_append, Path(params.append_to),
                                    f"{ctx.execution_id} {ctx.step_id} start\n")
        await asyncio.sleep(params.seconds)
        return ActionResult(f"slept {params.seconds:g}s", {"seconds": params.seconds})


class FailParams(ActionParams):
    message: str = "failed on purpose"
    # Fail only the first N attempts, then succeed: exercises retries.
    times: int | None = Field(default=None, ge=0)
    counter_file: str | None = None


class Fail:
    name: ClassVar[str] = "fail"
    Params = FailParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "Fails with `message` (the first `times` runs, or always)."

    async def run(self, ctx: ActionContext, params: FailParams) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(f"would fail with {params.message!r}")
        if params.times is not None and params.counter_file:
            seen = await asyncio.to_thread(_bump, Path(params.counter_file))
            if seen >= params.times:
                return ActionResult(f"succeeded after {seen} failures", {"failures": seen})
        raise ActionFailed(params.message)


def _bump(path: Path) -> int:
    """Increment a counter file; returns the count before this call."""
    seen = int(path.read_text() or 0) if path.exists() else 0
    path.write_text(str(seen + 1))
    return seen
