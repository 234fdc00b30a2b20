"""`runbook.start`: hand the incident to another runbook, with params, as a linked execution.

Triage text such as "if the features are stale, follow stale-feature-store instead" becomes a
step. Starting an execution is the engine's business (it owns executions and their lock), so
the engine runs this action itself; this module declares its parameters and its plan, which
lint, simulate and approvers see like any other action's.
"""

from __future__ import annotations

import json
from typing import ClassVar

from pydantic import Field

from app.actions.base import ActionContext, ActionFailed, ActionParams, ActionPlan, ActionResult

NAME = "runbook.start"


class StartParams(ActionParams):
    runbook: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    # Validated against the other runbook's own params before it starts, like a start by hand.
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    reason: str = Field(default="", max_length=500)


class RunbookStart:
    name: ClassVar[str] = NAME
    Params = StartParams
    # A repeat finds the execution it started (the per-target lock) instead of a second one.
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Starts another runbook with `params`, linked to this execution (a hand-off).")

    async def plan(self, ctx: ActionContext, params: StartParams) -> ActionPlan:
        shown = json.dumps(params.params, sort_keys=True, ensure_ascii=False)
        return ActionPlan(summary=f"start runbook {params.runbook} with params {shown}",
                          resolved={"runbook": params.runbook, "params": params.params})

    async def run(self, ctx: ActionContext, params: StartParams) -> ActionResult:
        raise ActionFailed("runbook.start runs inside the engine, which owns executions; "
                           "this runbookd's executor did not take it")
