"""The live parts of a simulation: plans (`simulate --plan`), and where the limits stand.

A plan needs live reads (a registry, MLflow, the allow-list), so simulate makes them only
when asked. Nothing is stored and nothing changes: plans are read-only by contract.

The limits read the database the way the executor will: how much of each rate budget is
spent, how many executions run in the concurrency scope, how many failures count toward the
breaker, and so whether this alert would join a running execution, be rate limited, wait
for a slot, or have a step skipped. Reads only: a simulation spends no budget.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.actions.base import ActionContext
from app.actions.registry import ActionRegistry
from app.catalog.schema import RateLimit
from app.catalog.simulate import PENDING, SimRunbook, SimStep, SimulationReport
from app.catalog.simulate_limits import SimBreaker, SimBudget
from app.config import Settings
from app.db import utcnow
from app.durations import format_duration, parse_duration
from app.engine import states
from app.engine.executions import active_execution_for
from app.engine.models import Execution
from app.engine.ratelimit import check_rate, check_step_rate, executions_spent, steps_spent
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
                if step.risk == "risky" and step.decision != "skipped":
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


async def add_limits(report: SimulationReport, *, session: AsyncSession, settings: Settings,
                     now: dt.datetime | None = None) -> SimulationReport:
    """Fill in how much of each budget is spent now and what the limits would do."""
    now = now or utcnow()
    for result in report.results:
        for runbook in result.runbooks:
            await _runbook_limits(session, runbook, settings, now)
    return report


async def _runbook_limits(session: AsyncSession, plan: SimRunbook, settings: Settings,
                          now: dt.datetime) -> None:
    limits = plan.limits
    if limits.breaker is None:
        window = dt.timedelta(seconds=settings.breaker_window_seconds)
        limits.breaker = SimBreaker(failures=settings.breaker_failures,
                                    within=format_duration(window), default=True)
    limits.breaker.failed = await _failures(session, plan.runbook,
                                            parse_duration(limits.breaker.within), now)
    for step in plan.steps:
        if step.rate is not None and step.rate.key is not None:
            for budget in step.rate.budgets:
                _spent(budget, *await steps_spent(session, key=step.rate.key,
                                                  limit=_limit(budget), now=now), now)
    if plan.target is None:
        return  # no execution, so nothing is counted per target
    for budget in limits.rate:
        _spent(budget, *await executions_spent(session, runbook_id=plan.runbook,
                                               target=plan.target, limit=_limit(budget),
                                               now=now), now)
    limits.active = await _active(session, plan.runbook, plan.target, limits.concurrent_scope)
    if plan.would_execute:
        await _verdict(session, plan, now)


async def _verdict(session: AsyncSession, plan: SimRunbook, now: dt.datetime) -> None:
    """What the executor would do with this alert now, in the order it checks."""
    assert plan.target is not None
    limits = plan.limits
    joined = await active_execution_for(session, plan.runbook, plan.target)
    if joined is not None:
        # The per-target lock: the alert joins the running execution and starts nothing.
        plan.would_execute = False
        plan.reason = (f"no new execution: the alert would join execution {joined.id} "
                       f"({joined.status}) for {plan.target}")
        limits.verdict = f"joins execution {joined.id}: no budget is spent"
        return
    rate = await check_rate(session, runbook_id=plan.runbook, target=plan.target,
                            limits=[_limit(b) for b in limits.rate], now=now)
    if not rate.allowed:
        limits.verdict = f"rate limited: {rate.describe()}"
        plan.reason = (f"an execution would wait for its window, {limits.verdict}; it starts "
                       "then if its alerts still fire")
        for step in plan.steps:
            if step.decision != "held":
                step.decision, step.reason = "held", ("not run yet: the execution waits for "
                                                      "its rate-limit window")
        return
    scope = "for this target" if limits.concurrent_scope == "target" else "of this runbook"
    if limits.active is not None and limits.active >= limits.concurrent:
        running = (f"{limits.active} of {limits.concurrent} concurrent execution(s) {scope} "
                   "running")
        limits.verdict = f"waits for a slot: {running}; it starts when one ends"
        plan.reason += f"; it would wait for a slot ({running})"
    else:
        limits.verdict = "allowed"
    for step in plan.steps:
        if step.rate is None or step.rate.key is None or step.decision == "held":
            continue
        budget = await check_step_rate(session, key=step.rate.key,
                                       limits=[_limit(b) for b in step.rate.budgets], now=now)
        if not budget.allowed:
            # As the executor records it; the rest of the runbook goes on.
            step.decision, step.reason = "skipped", f"skipped: {budget.describe()}"


def _limit(budget: SimBudget) -> RateLimit:
    return RateLimit(count=budget.count, per=budget.per)


def _spent(budget: SimBudget, count: int, oldest: dt.datetime | None,
           now: dt.datetime) -> None:
    budget.spent = count
    if count >= budget.count:
        # As check_rate estimates it: the oldest run in the window leaves it first.
        budget.next_allowed_at = (oldest or now) + parse_duration(budget.per)


async def _active(session: AsyncSession, runbook_id: str, target: str, scope: str) -> int:
    """Executions holding a concurrency slot, counted as the executor counts them."""
    query = select(func.count()).select_from(Execution).where(
        Execution.runbook_id == runbook_id, Execution.started_at.is_not(None),
        Execution.status.in_(states.ACTIVE_EXECUTION - {states.PAUSED}))
    if scope == "target":
        query = query.where(Execution.target == target)
    return (await session.execute(query)).scalar_one()


async def _failures(session: AsyncSession, runbook_id: str, within: dt.timedelta,
                    now: dt.datetime) -> int:
    """Failed real executions inside the breaker's window, counted as the breaker does."""
    return (await session.execute(
        select(func.count()).select_from(Execution).where(
            Execution.runbook_id == runbook_id, Execution.status == states.FAILED,
            Execution.finished_at >= now - within, Execution.dry_run.is_(False))
    )).scalar_one()
