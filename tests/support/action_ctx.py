"""Build an ActionContext for tests and run an action the way the executor does: validate the
rendered `with:` against the action's Params, then call `run`."""

from __future__ import annotations

from typing import Any

from app.actions.base import Action, ActionContext, ActionResult
from app.config import Settings
from app.outbound import OutboundHttp


def make_ctx(*, allow: list[str] | None = None, dry_run: bool = False,
             execution_id: int | None = 7, step_id: str | None = "step-one",
             http: OutboundHttp | None = None, **settings: Any) -> ActionContext:
    """A context with development settings; `allow` is the outbound host allow-list."""
    values: dict[str, Any] = {"env": "dev", "http_allowlist": allow or []}
    values.update(settings)
    return ActionContext(settings=Settings(**values), http=http or OutboundHttp(allow or []),
                         dry_run=dry_run, execution_id=execution_id, step_id=step_id)


async def run_action(action: Action, ctx: ActionContext, **params: Any) -> ActionResult:
    """Validate `params` with the action's model and run it."""
    return await action.run(ctx, action.Params.model_validate(params))
