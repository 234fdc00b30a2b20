"""An example runbookd action plug-in: `example.echo` returns its message."""

from __future__ import annotations

from typing import ClassVar

from app.actions.base import ActionContext, ActionParams, ActionResult


class EchoParams(ActionParams):
    message: str


class Echo:
    name: ClassVar[str] = "example.echo"
    Params = EchoParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "Returns `message` as its output (a plug-in example)."

    async def run(self, ctx: ActionContext, params: EchoParams) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(f"would echo {params.message!r}")
        return ActionResult(f"echoed {params.message!r}", {"message": params.message})
