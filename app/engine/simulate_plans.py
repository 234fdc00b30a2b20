"""Plans in a simulation (`simulate --plan`): what each risky step would change right now.

A plan needs live reads (a registry, MLflow, the allow-list), so simulate makes them only
when asked. Nothing is stored and nothing changes: plans are read-only by contract.
"""

from __future__ import annotations

import json

from app.actions.base import ActionContext
from app.actions.registry import ActionRegistry
from app.catalog.simulate import PENDING, SimStep, SimulationReport
from app.config import Settings
from app.engine.runner import PlanFailed, plan_action
from app.outbound import OutboundHttp

# A simulation is for a person waiting at a prompt: a slow peer must not hold it long.
PLAN_TIMEOUT_SECONDS = 10.0


async def add_plans(report: SimulationReport, *, registry: ActionRegistry, settings: Settings,
                    http: OutboundHttp) -> SimulationReport:
    """Fill `plan` (or `plan_error`) of every risky step that would start an execution."""
    ctx = ActionContext(settings=settings, http=http, dry_run=True)
    for result in report.results:
        for runbook in result.runbooks:
            if not runbook.would_execute:
                continue
            for step in runbook.steps:
                if step.risk == "risky":
                    await _plan_step(step, registry, ctx)
    return report


async def _plan_step(step: SimStep, registry: ActionRegistry, ctx: ActionContext) -> None:
    if step.errors:
        step.plan_error = "the step's parameters are invalid: " + "; ".join(step.errors)
        return
    try:
        # A value known only at run time (an execution id in a free-text reason) stays a
        # placeholder; the plan fails only if the action cannot take it.
        plan = await plan_action(registry, ctx, step.action, step.with_,
                                 timeout=PLAN_TIMEOUT_SECONDS)
    except PlanFailed as exc:
        step.plan_error = exc.message
        if PENDING.search(json.dumps(step.with_, default=str)):
            step.plan_error = ("the plan depends on a value known only when the execution "
                               f"runs (an earlier step's output): {exc.message}")
        return
    step.plan = plan.summary
