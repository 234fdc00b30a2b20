"""Drills in the engine: what a step does when its execution is a drill (`dry_run`).

A drill exercises a runbook against the real systems without changing them. A safe step whose
action declares itself read-only (`read_only`, or `reads_only(params)`) really runs, through
the action's own dry-run read path: it reads once and does not wait (a drill must not hold a
worker for a retraining's hours, and a read that resolves once tells whether it still
resolves). Every other step, and every risky step, is only planned: the action's `plan()` (or
its rendered call) is made and its `run()` is never called. That is this module's guard, and
it holds whatever an action does with `ctx.dry_run`.

A drill never asks for approval, never rolls back, never jumps: it walks every step in order
so that each gets a verdict, and a failed read or plan is a finding, not a stop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.actions.base import ActionContext, reads_only
from app.actions.registry import ActionRegistry, UnknownAction
from app.config import Settings
from app.db import session_scope, utcnow
from app.engine import states
from app.engine.drills_verdicts import PLANNED, check_verdict
from app.engine.models import Execution
from app.engine.runner import Outcome, PlanFailed, bound_output, plan_action, run_action
from app.engine.transitions import lock_execution
from app.events import record_event

DRILL_PRECONDITIONS = "drill.preconditions"  # the event holding the preconditions' verdicts


def is_drill(execution: Execution) -> bool:
    """Whether an execution is a drill: its read-only safe steps run, the rest are planned.

    `Execution.dry_run` is the flag; anything that holds a runbook in drill mode (a change not
    yet signed off) starts its executions with `dry_run=True` and asks here."""
    return bool(execution.dry_run)


def read_only_call(registry: ActionRegistry, action_name: str, params: dict[str, Any]) -> bool:
    """Whether this call only reads (an unknown action or bad params: no)."""
    try:
        action = registry.get(action_name)
        validated = action.Params.model_validate(params)
    except (UnknownAction, ValidationError):
        return False
    return reads_only(action, validated)


async def drill_action(registry: ActionRegistry, ctx: ActionContext, action_name: str,
                       params: dict[str, Any], *, risky: bool, timeout: float,
                       output_limit: int) -> Outcome:
    """One drilled step: run it when it is safe and reads only, otherwise plan it only."""
    if not ctx.dry_run:
        raise ValueError("drill_action needs a drill's context (dry_run)")
    if not risky and read_only_call(registry, action_name, params):
        return await run_action(registry, ctx, action_name, params, timeout=timeout,
                                idempotent=True, output_limit=output_limit)
    started = time.perf_counter()
    try:
        plan = await plan_action(registry, ctx, action_name, params, timeout=timeout)
    except PlanFailed as exc:
        return Outcome("failed", exc.message, {"drill": PLANNED}, error=exc.message,
                       duration_ms=_ms(started))
    # The plan's resolved values stand in for the output, so that a later step's template
    # (`steps.retrain.output.dag_run_id`) renders in a drill as it would for real.
    output = bound_output({**plan.resolved, "drill": PLANNED, "plan": plan.summary},
                          output_limit)
    return Outcome("succeeded", f"drill, planned only: {plan.summary}", output,
                   duration_ms=_ms(started))


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


Check = tuple[str, dict[str, Any], float | None]


class Drills:
    """Mixed into Executor: a drill's preconditions, each read once and judged."""

    settings: Settings
    factory: async_sessionmaker[AsyncSession]
    registry: ActionRegistry
    me: str
    actor: str

    if TYPE_CHECKING:  # provided by Executor and Outcomes, beside which this is mixed in
        def _context(self, execution_id: int, step_id: str | None,
                     dry_run: bool) -> ActionContext: ...

        async def _move(self, session: AsyncSession, execution: Execution, to_state: str, *,
                        reason: str, **fields: Any) -> None: ...

    async def _drill_checks(self, execution_id: int, checks: tuple[Check, ...], *,
                            titles: list[str], first: bool) -> None:
        """Read each precondition once. In a drill a precondition that does not hold is
        normal (nothing is on fire); one that cannot be read is rot. Never cancels."""
        ctx = self._context(execution_id, None, True)
        verdicts = []
        for index, (action, params, _within) in enumerate(checks):
            outcome = await drill_action(
                self.registry, ctx, action, params, risky=False,
                timeout=min(self.settings.default_step_timeout_seconds, 60.0),
                output_limit=self.settings.step_output_limit)
            title = titles[index] if index < len(titles) and titles[index] else action
            verdicts.append(check_verdict(
                index=index, title=title, action=action, ok=outcome.ok,
                summary=outcome.summary, error=outcome.error, output=outcome.output,
                params=params).as_dict())
        async with session_scope(self.factory) as session:
            execution = await lock_execution(session, execution_id)
            if execution.lease_owner != self.me or execution.status not in (
                    states.PENDING, states.RUNNING):
                return
            bad = sum(not v["ok"] for v in verdicts)
            record_event(session, kind=DRILL_PRECONDITIONS, entity="execution",
                         actor=self.actor, execution_id=execution_id,
                         reason=f"drill: {len(verdicts)} preconditions read, {bad} unreadable",
                         data={"checks": verdicts})
            if first:
                await self._move(session, execution, states.RUNNING, reason="started",
                                 started_at=utcnow())
