"""Drive one execution step by step while this worker holds its lease.

Each step is a short transaction to decide what to do, the action outside any transaction,
and a short transaction to record it. The step is committed as `running` before its action
starts, so after a crash nobody runs a non-idempotent step again without a human
(invariant 4); every write checks the lease, so a worker that lost it changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import logs, metrics
from app.actions.base import ActionContext, ActionPlan
from app.actions.handoff import NAME as HANDOFF
from app.actions.handoff import StartParams
from app.actions.registry import ActionRegistry
from app.catalog.params import ParamError, render_target, validate_manual_params
from app.catalog.schema import ApprovalSpec, Runbook, Step
from app.catalog.templating import RenderError, render_string, render_value
from app.config import Settings
from app.db import after_commit, session_scope, utcnow
from app.engine import states
from app.engine.approvals import valid_approvers
from app.engine.brakes import brakes_for, check_brakes, page_channels
from app.engine.context import approval_channels, failure_channels, step_context
from app.engine.drills import Drills, drill_action
from app.engine.executions import cancel_open_steps, void_approvals
from app.engine.guards import current_guard_state
from app.engine.models import Execution, StepRun
from app.engine.outcomes import Outcomes
from app.engine.proposals import Proposals, ProposePlan
from app.engine.ratelimit import check_rate, check_step_rate, lock_budget
from app.engine.rounds import Rounds
from app.engine.runbooks import RunbookVersions
from app.engine.runner import Outcome, run_action, run_check, step_hash, waits_of
from app.engine.starts import start_or_attach
from app.engine.transitions import (
    add_step_run,
    lock_execution,
    lock_step,
    step_runs_of,
    transition_step,
)
from app.errors import Unavailable, is_database_unavailable
from app.events import record_event
from app.outbound import OutboundHttp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stop:
    reason: str
    # The transaction that decided to stop also gave the lease up: the worker need not.
    released: bool = False


@dataclass(frozen=True)
class CheckFirst:
    """Run the runbook's preconditions before going on (first start, or a risky step)."""

    checks: tuple[tuple[str, dict[str, Any], float | None], ...]
    step_run_id: int | None  # None: before the first step
    titles: list[str] = field(default_factory=list)  # the checks' titles (a drill's verdicts)


@dataclass(frozen=True, kw_only=True)
class RunStep:
    step_run_id: int
    kind: str
    action: str
    params: dict[str, Any]
    timeout: float
    retries: int
    idempotent: bool
    verify: tuple[str, dict[str, Any], float | None] | None
    started: bool  # already committed as running
    # The plan its approvals cover (risky steps): resolved again before the step starts.
    approved_plan: ActionPlan | None = None
    step_ref: str = ""  # how logs name it: the step id, or `<step>.rollback`
    risky: bool = False  # a drill only plans it, whatever its action


Plan = Stop | CheckFirst | ProposePlan | RunStep


class Executor(Outcomes, Proposals, Drills):
    """Runs executions for one worker identity."""

    def __init__(
        self, *, settings: Settings, session_factory: async_sessionmaker[AsyncSession],
        registry: ActionRegistry, runbooks: RunbookVersions, http: OutboundHttp,
        worker_id: str,
    ) -> None:
        self.settings = settings
        self.factory = session_factory
        self.registry = registry
        self.runbooks = runbooks
        self.http = http
        self.me = worker_id
        self.actor = f"worker:{worker_id}"
        # Whether each execution being driven is a drill, as read when its row was locked:
        # it never changes, so it costs no transaction of its own.
        self._dry_runs: dict[int, bool] = {}
        # Waits while webhooks of this process are being stored (set by whoever runs both):
        # called before each transaction, so that a storm's acknowledgements do not queue
        # behind the executions it starts.
        self.yield_to_intake: Callable[[], Awaitable[None]] = _no_wait
        # The drivers' decisions that are ready at once share a transaction.
        self.rounds = Rounds(session_factory)

    async def drive(self, execution_id: int) -> bool:
        """Advance the execution until it ends, waits for a human, or is held. True when
        its lease was given up on the way (the worker then has nothing to release)."""
        with logs.context(execution_id=execution_id):
            try:
                return await self._drive(execution_id)
            finally:
                self._dry_runs.pop(execution_id, None)

    async def _drive(self, execution_id: int) -> bool:
        dry_run: bool | None = None  # fixed for the life of an execution: read it once
        # The transaction that records a step also decides (and starts) the next one.
        decided: Plan | None = None
        while True:
            if decided is None:
                await self.yield_to_intake()
                decided = await self._plan(execution_id)
            plan, decided = decided, None
            if isinstance(plan, Stop):
                return plan.released
            if dry_run is None:
                dry_run = await self._dry_run(execution_id)
            if isinstance(plan, CheckFirst) and dry_run:
                await self._drill_checks(execution_id, plan.checks, titles=plan.titles,
                                         first=plan.step_run_id is None)
                continue
            if isinstance(plan, CheckFirst):
                failure = await self._run_checks(execution_id, plan, dry_run)
                await self._after_checks(execution_id, plan, failure)
                continue
            if isinstance(plan, ProposePlan):
                await self._propose(execution_id, plan, dry_run)
                continue
            if plan.approved_plan is not None and not await self._confirm_plan(
                    execution_id, plan.step_run_id, plan.action, plan.params,
                    plan.approved_plan, plan.timeout, dry_run):
                continue
            if not plan.started and not await self._begin(execution_id, plan, dry_run):
                return False
            outcome = await self._execute(execution_id, plan, dry_run)
            await self.yield_to_intake()
            decided = await self._finish(execution_id, plan, outcome)

    # -- deciding -------------------------------------------------------------------------

    async def _plan(self, execution_id: int) -> Plan:
        return await self.rounds.run(execution_id, self._decide)

    async def _decide(self, session: AsyncSession, execution: Execution) -> Plan:
        """What to do next with a locked execution; a Stop gives the lease up in the same
        transaction (a final state has cleared it already)."""
        if execution.lease_owner != self.me:
            return Stop("lease lost")
        self._dry_runs[execution.id] = execution.dry_run
        plan = await self._decide_leased(session, execution)
        if isinstance(plan, Stop):
            if execution.lease_owner == self.me:
                execution.lease_owner = None
                execution.lease_expires_at = None
            return replace(plan, released=True)
        return plan

    async def _decide_leased(self, session: AsyncSession, execution: Execution) -> Plan:
        held_by_limit = execution.status == states.RATE_LIMITED
        if held_by_limit:
            await self._move(session, execution, states.PENDING,
                             reason="its rate-limit window passed: trying again")
        if execution.status not in (states.PENDING, states.RUNNING):
            return Stop(execution.status)
        runbook = await self.runbooks.get(session, execution.runbook_id,
                                          execution.runbook_version)
        hold = (await current_guard_state(session)).holds(execution.runbook_id)
        if hold:
            await self._move(session, execution, states.PAUSED, reason=hold)
            return Stop(hold)
        if execution.status == states.PENDING:
            if execution.started_at is None:
                first = await self._first_start(session, execution, runbook,
                                                again=held_by_limit)
                if first is not None:
                    return first
            else:
                await self._move(session, execution, states.RUNNING, reason="resumed")
        return await self._next(session, execution, runbook)

    async def _first_start(
        self, session: AsyncSession, execution: Execution, runbook: Runbook, *,
        again: bool = False,
    ) -> Plan | None:
        """Start an execution, unless a limit holds it: a rate limit holds it until its
        window passes (notified once, `again` is a later try), the concurrency limit until a
        slot frees."""
        now = utcnow()
        if execution.trigger == "rollback":
            # A person asked for this undo: limits and the runbook's preconditions (which
            # ask whether the problem is real) do not apply to it.
            await self._move(session, execution, states.RUNNING, reason="started",
                             started_at=now)
            return None
        if not execution.dry_run:
            verdict = await check_rate(session, runbook_id=runbook.id, target=execution.target,
                                       limits=runbook.limits.rate, now=now,
                                       exclude_id=execution.id)
            if not verdict.allowed:
                reason = verdict.describe()
                await self._move(session, execution, states.RATE_LIMITED, reason=reason,
                                 wake_at=verdict.next_allowed_at,
                                 data={"next_allowed_at": verdict.next_allowed_at.isoformat()
                                       if verdict.next_allowed_at else None})
                if not again:
                    self._notify(session, execution, runbook, kind="rate_limited",
                                 channels=failure_channels(runbook),
                                 text=f"{reason}; it starts then if its alerts still fire")
                return Stop(reason)
        if await self._at_concurrency_limit(session, execution, runbook):
            execution.wake_at = now + dt.timedelta(seconds=self.settings.poll_seconds * 5)
            return Stop("concurrency limit")
        brake = None if execution.dry_run else await check_brakes(
            session, execution, brakes_for(runbook, self.runbooks.global_brake()), now=now)
        if brake is not None:  # held like a paused runbook; the one that engaged it pages
            await self._move(session, execution, states.PAUSED, reason=brake.reason)
            if brake.engaged_now:
                self._notify(session, execution, runbook, kind="brake_engaged",
                             channels=page_channels(runbook, brake.config), text=brake.page_text,
                             extra={"brake": brake.scope, "targets": list(brake.targets)})
            return Stop(brake.reason)
        if runbook.preconditions:
            return CheckFirst(_checks(runbook, await step_context(session, execution)), None,
                              [c.title for c in runbook.preconditions])
        await self._move(session, execution, states.RUNNING, reason="started", started_at=now)
        return None

    async def _at_concurrency_limit(self, session: AsyncSession, execution: Execution,
                                    runbook: Runbook) -> bool:
        if runbook.limits.concurrent_scope == "target":
            # The database holds one active execution per runbook and target at most
            # (`uq_executions_active_target`), and a limit is at least 1: no other can be
            # counted, so no lock and no count (which would flush the round's writes).
            return False
        query = select(func.count()).select_from(Execution).where(
            Execution.runbook_id == runbook.id, Execution.id != execution.id,
            Execution.started_at.is_not(None),
            Execution.status.in_(states.ACTIVE_EXECUTION - {states.PAUSED}),
        )
        # Two executions starting at once must not both count the other as not started:
        # the second counts after the first has committed (PostgreSQL; SQLite has one writer).
        await lock_budget(session, f"concurrent:{runbook.id}")
        return (await session.execute(query)).scalar_one() >= runbook.limits.concurrent

    async def _next(self, session: AsyncSession, execution: Execution, runbook: Runbook) -> Plan:
        runs = {(r.kind, r.step_id): r for r in await step_runs_of(session, execution.id)}
        if execution.cursor == states.CURSOR_ROLLBACK:
            return await self._next_rollback(session, execution, runs)
        if execution.cursor == states.CURSOR_END:
            await self._finish_execution(session, execution, runbook, succeeded=True,
                                         reason=_end_reason(runs.values()))
            return Stop(states.SUCCEEDED)
        step = runbook.step(execution.cursor) if execution.cursor else runbook.steps[0]
        execution.cursor = step.id
        run = runs.get(("step", step.id))
        if run is None:
            run = StepRun(
                execution_id=execution.id, step_id=step.id, kind="step",
                position=runbook.step_index(step.id), title=step.title, action=step.action,
                risky=step.risk == "risky", idempotent=self._idempotent(step),
                status=states.STEP_PENDING, attempts=0, created_at=utcnow(),
            )
            # Not flushed yet: a run that starts now is inserted as running, in one
            # statement, with the round's other writes.
            await add_step_run(session, run)
            runs[("step", step.id)] = run
        if run.status == states.STEP_RUNNING:
            return await self._recover(session, execution, run)
        if run.status == states.STEP_SUCCEEDED:
            await self._after_success(session, execution, runbook, step)
            return await self._next(session, execution, runbook)
        if run.status == states.STEP_SKIPPED:
            await self._advance(session, execution, runbook, step)
            return await self._next(session, execution, runbook)

        context = await step_context(session, execution, runs=runs.values())
        try:
            params = render_value(step.with_, context)
        except RenderError as exc:
            await transition_step(session, run, states.STEP_FAILED, actor=self.actor,
                                  reason=str(exc), error=str(exc), finished_at=utcnow())
            await self._after_failure(session, execution, runbook, step, str(exc))
            if execution.status != states.RUNNING:
                return Stop(execution.status)
            return await self._next(session, execution, runbook)
        verify = _verify(step, context)
        budgeted = step.rate and not execution.dry_run and run.status in (
            states.STEP_PENDING, states.STEP_APPROVED)
        if budgeted and await self._spent(session, execution, runbook, step, run, context):
            return await self._next(session, execution, runbook)

        if run.status == states.STEP_AWAITING_APPROVAL:
            await self._move(session, execution, states.AWAITING_APPROVAL,
                             reason=f"step {step.id} awaits approval")
            return Stop("awaiting approval")
        ready = RunStep(step_run_id=run.id, kind="step", action=step.action, params=params,
                        timeout=self._timeout(step, params), retries=step.retries,
                        idempotent=run.idempotent, verify=verify, started=False,
                        step_ref=run.ref, risky=step.risk == "risky")
        if step.risk == "risky" and not execution.dry_run:  # a drill plans it, asks nobody
            return await self._approved_or_asked(session, run, step, ready)
        return await self._start(session, run, ready)

    async def _approved_or_asked(self, session: AsyncSession, run: StepRun, step: Step,
                                 ready: RunStep) -> Plan:
        """A risky run (a step, or the rollback of one): ask for approval of its plan, or run
        it once approved, if it still renders the same and a full quorum stands."""
        propose = ProposePlan(step_run_id=run.id, action=ready.action, params=ready.params,
                              timeout=ready.timeout)
        if run.status != states.STEP_APPROVED:
            return propose
        approved = ActionPlan.of(run.plan) if run.plan is not None else None
        spec = step.approvals or ApprovalSpec()
        if (step_hash(ready.action, ready.params, approved) == run.step_hash
                and len(await valid_approvers(session, run)) >= spec.count):
            return replace(ready, approved_plan=approved)
        return replace(propose, revote_reason=f"the rendered {ready.kind} changed before it ran")

    async def _start(self, session: AsyncSession, run: StepRun, ready: RunStep) -> RunStep:
        """A run that needs no approval: committed as running before its action starts."""
        await transition_step(session, run, states.STEP_RUNNING, actor=self.actor,
                              params=ready.params, step_hash=step_hash(ready.action, ready.params),
                              started_at=utcnow(), attempts=run.attempts + 1)
        return replace(ready, started=True, step_run_id=run.id)  # a new run has its id now

    async def _spent(self, session: AsyncSession, execution: Execution, runbook: Runbook,
                     step: Step, run: StepRun, context: dict[str, Any]) -> bool:
        """Skip a step whose rate budget is spent (the runbook goes on); otherwise mark the
        run as spending the budget when it starts. Checked before approval is asked, so
        nobody approves a step that cannot run, and again before it runs."""
        try:
            key = (render_string(step.rate_key, context) if step.rate_key
                   else f"{runbook.id}:{step.id}:{execution.target}")
        except RenderError as exc:
            key = f"{runbook.id}:{step.id}:{execution.target}"
            log.warning("execution %s step %s: rate_key does not render (%s); using %s",
                             execution.id, step.id, exc, key)
        await lock_budget(session, key)
        verdict = await check_step_rate(session, key=key, limits=step.rate, now=utcnow(),
                                        exclude_id=run.id)
        run.rate_key = key
        if verdict.allowed:
            return False
        reason = f"skipped: {verdict.describe()}"
        await void_approvals(session, run, reason=reason, actor=self.actor)
        await transition_step(session, run, states.STEP_SKIPPED, actor=self.actor,
                              reason=reason, summary=reason, finished_at=utcnow())
        record_event(session, kind="step.rate_limited", entity="step", actor=self.actor,
                     execution_id=execution.id, step_run_id=run.id, step_id=step.id,
                     reason=reason, data={"rate_key": key, "next_allowed_at":
                                          verdict.next_allowed_at.isoformat()
                                          if verdict.next_allowed_at else None})
        # A spent budget is by design, not a failure: the first tier hears, nobody is paged.
        self._notify(session, execution, runbook, kind="rate_limited",
                     channels=approval_channels(runbook), text=f"step {step.id} {reason}",
                     step=run)
        await self._advance(session, execution, runbook, step)
        return True

    async def _next_rollback(
        self, session: AsyncSession, execution: Execution, runs: dict[tuple[str, str], StepRun],
    ) -> Plan:
        """The next queued rollback, newest step first. The rollback of a risky step asks its
        approvers first (unless the runbook marks it `auto`), as the step itself did."""
        queued = sorted((r for (kind, _), r in runs.items()
                         if kind == "rollback" and r.status in states.OPEN_STEP),
                        key=lambda r: -r.position)
        runbook = await self.runbooks.get(session, execution.runbook_id,
                                          execution.runbook_version)
        if not queued:
            await self._end_rollback(session, execution, runbook, runs)
            return Stop("rolled back")
        run = queued[0]
        if run.status == states.STEP_AWAITING_APPROVAL:
            await self._move(session, execution, states.AWAITING_APPROVAL,
                             reason=f"step {run.ref} awaits approval")
            return Stop("awaiting approval")
        context = await step_context(session, execution)
        try:
            params = render_value(run.params or {}, context)
        except RenderError as exc:
            await transition_step(session, run, states.STEP_FAILED, actor=self.actor,
                                  reason=str(exc), error=str(exc), finished_at=utcnow())
            return await self._next_rollback(session, execution, runs)
        step = runbook.step(run.step_id)
        timeout = (step.rollback.timeout.total_seconds() if step.rollback
                   and step.rollback.timeout else self.settings.default_step_timeout_seconds)
        ready = RunStep(step_run_id=run.id, kind="rollback", action=run.action, params=params,
                        timeout=timeout, retries=0, idempotent=False, verify=None,
                        started=False, step_ref=run.ref)
        if run.risky:
            return await self._approved_or_asked(session, run, step, ready)
        return await self._start(session, run, ready)

    async def _end_rollback(self, session: AsyncSession, execution: Execution,
                            runbook: Runbook, runs: dict[tuple[str, str], StepRun]) -> None:
        """Every rollback is done: a failed execution stays failed; a rollback started by hand
        succeeds when its rollbacks did."""
        if execution.trigger != "rollback":
            # Said again from the failed step: waiting for a rollback's approval replaced
            # the execution's reason meanwhile.
            failed = next((r for (kind, _), r in runs.items() if kind == "step"
                           and r.status in (states.STEP_FAILED, states.STEP_TIMED_OUT)), None)
            reason = (f"step {failed.step_id} failed: {failed.error or failed.summary}"
                      f"; rolled back"[:2000] if failed is not None
                      else execution.status_reason or "rolled back")
            await self._finish_execution(session, execution, runbook, succeeded=False,
                                         reason=reason)
            return
        undone = [r for (kind, _), r in runs.items() if kind == "rollback"]
        names = ", ".join(r.step_id for r in undone)
        if all(r.status == states.STEP_SUCCEEDED for r in undone):
            await self._finish_execution(
                session, execution, runbook, succeeded=True,
                reason=f"rolled back step {names} of execution {execution.parent_id}")
        else:
            await self._finish_execution(
                session, execution, runbook, succeeded=False,
                reason=f"the rollback of step {names} of execution {execution.parent_id} "
                       "did not succeed")

    async def _recover(self, session: AsyncSession, execution: Execution, run: StepRun) -> Plan:
        """A step left `running` by a worker that crashed or lost its lease."""
        await transition_step(session, run, states.STEP_INTERRUPTED, actor=self.actor,
                              reason="the worker running this step stopped")
        if run.idempotent:
            await transition_step(session, run, states.STEP_PENDING, actor=self.actor,
                                  reason="idempotent: retried after the interruption")
            runbook = await self.runbooks.get(session, execution.runbook_id,
                                              execution.runbook_version)
            return await self._next(session, execution, runbook)
        reason = (f"step {run.step_id} was interrupted while running and is not idempotent; "
                  "choose retry, skip or abort")
        await self._move(session, execution, states.NEEDS_ATTENTION, reason=reason)
        runbook = await self.runbooks.get(session, execution.runbook_id,
                                          execution.runbook_version)
        self._notify(session, execution, runbook, kind="needs_attention",
                     channels=failure_channels(runbook), text=reason)
        return Stop("needs attention")

    # -- doing ----------------------------------------------------------------------------

    async def _run_checks(self, execution_id: int, plan: CheckFirst,
                          dry_run: bool) -> str | None:
        """Run the preconditions; returns why one failed, or None."""
        ctx = self._context(execution_id, None, dry_run)
        for action, params, within in plan.checks:
            outcome = await run_check(self.registry, ctx, action, params, within=within,
                                      timeout=min(self.settings.default_step_timeout_seconds,
                                                  60.0))
            if not outcome.ok:
                return f"precondition {action} not met: {outcome.summary}"
        return None

    async def _after_checks(self, execution_id: int, plan: CheckFirst,
                            failure: str | None) -> None:
        async with session_scope(self.factory) as session:
            execution = await lock_execution(session, execution_id)
            if execution.lease_owner != self.me or execution.status not in (
                    states.PENDING, states.RUNNING):
                return
            record_event(session, kind="preconditions", entity="execution", actor=self.actor,
                         execution_id=execution_id, reason=failure or "all preconditions met")
            if failure is not None:
                await cancel_open_steps(session, execution_id, actor=self.actor, reason=failure)
                await self._move(session, execution, states.CANCELLED, reason=failure)
            elif plan.step_run_id is None:
                await self._move(session, execution, states.RUNNING, reason="started",
                                 started_at=utcnow())

    async def _begin(self, execution_id: int, plan: RunStep, dry_run: bool) -> bool:
        """Commit an approved risky step as running, after re-checking preconditions."""
        async with session_scope(self.factory) as session:
            execution = await lock_execution(session, execution_id)
            runbook = await self.runbooks.get(session, execution.runbook_id,
                                              execution.runbook_version)
            # Preconditions ask whether the problem is real before a change; an undo is
            # wanted whether or not it still is.
            checks = (_checks(runbook, await step_context(session, execution))
                      if runbook.preconditions and plan.kind == "step" else ())
        if checks:
            failure = await self._run_checks(execution_id, CheckFirst(checks, plan.step_run_id),
                                             dry_run)
            if failure is not None:
                await self._after_checks(execution_id, CheckFirst((), plan.step_run_id), failure)
                return False
        async with session_scope(self.factory) as session:
            execution = await lock_execution(session, execution_id)
            if execution.lease_owner != self.me or execution.status != states.RUNNING:
                return False
            run = await session.get(StepRun, plan.step_run_id)
            assert run is not None
            await transition_step(session, run, states.STEP_RUNNING, actor=self.actor,
                                  started_at=utcnow(), attempts=run.attempts + 1)
        return True

    async def _execute(self, execution_id: int, plan: RunStep, dry_run: bool) -> Outcome:
        with logs.context(step_id=plan.step_ref):
            return await self._execute_step(execution_id, plan, dry_run)

    async def _execute_step(self, execution_id: int, plan: RunStep, dry_run: bool) -> Outcome:
        ctx = self._context(execution_id, str(plan.step_run_id), dry_run)
        if plan.action == HANDOFF:
            return await self._hand_off(execution_id, plan.params, dry_run)
        if dry_run:
            # The guard: in a drill only a safe read-only action runs; the rest are planned
            # (a drill verifies nothing: the step it would verify changed nothing).
            return await drill_action(self.registry, ctx, plan.action, plan.params,
                                      risky=plan.risky, timeout=plan.timeout,
                                      output_limit=self.settings.step_output_limit)
        outcome = await run_action(self.registry, ctx, plan.action, plan.params,
                                   timeout=plan.timeout, retries=plan.retries,
                                   idempotent=plan.idempotent,
                                   output_limit=self.settings.step_output_limit)
        if outcome.ok and plan.verify is not None:
            action, params, within = plan.verify
            check = await run_check(self.registry, ctx, action, params, within=within,
                                    timeout=min(plan.timeout, 60.0),
                                    output_limit=self.settings.step_output_limit)
            if not check.ok:
                message = f"verification failed: {check.summary}"
                return Outcome("failed", message, {**outcome.output, "verify": check.output},
                               error=message, attempts=outcome.attempts,
                               duration_ms=outcome.duration_ms + check.duration_ms)
            outcome = Outcome("succeeded", f"{outcome.summary}; verified: {check.summary}",
                              {**outcome.output, "verify": check.output},
                              attempts=outcome.attempts,
                              duration_ms=outcome.duration_ms + check.duration_ms)
        return outcome

    async def _hand_off(self, execution_id: int, params: dict[str, Any],
                        dry_run: bool) -> Outcome:
        """`runbook.start`: start another runbook with params, linked to this execution, in
        one transaction (a repeat finds the execution it started: the per-target lock)."""
        try:
            start = StartParams.model_validate(params)
        except ValidationError as exc:
            message = f"invalid parameters for runbook.start: {exc.errors()[0]['msg']}"
            return Outcome("failed", message, error=message)
        async with session_scope(self.factory) as session:
            execution = await lock_execution(session, execution_id)
            loaded = self.runbooks.current(start.runbook)
            if loaded is None:
                message = f"runbook {start.runbook!r} is not in the catalog"
                return Outcome("failed", message, error=message)
            try:
                child_params = validate_manual_params(loaded.runbook, start.params)
                target = render_target(loaded.runbook, child_params)
            except (ParamError, RenderError, ValueError) as exc:
                message = f"params for runbook {start.runbook}: {exc}"
                return Outcome("failed", message, error=message)
            if dry_run:
                return Outcome("succeeded", f"would start runbook {start.runbook} on {target}",
                               {"runbook": start.runbook, "target": target})
            child, created = await start_or_attach(
                session, runbook=loaded.runbook, version=loaded.version, target=target,
                params=child_params, alert_id=None, alert_fired_at=execution.alert_fired_at,
                actor=self.actor, trigger="runbook", started_by=None,
                parent_id=execution_id, reason=start.reason)
            verb = "started" if created else "joined the active"
        summary = f"{verb} runbook {start.runbook} as execution {child.id} on {target}"
        return Outcome("succeeded", summary, {"execution_id": child.id,
                                              "runbook": start.runbook, "target": target,
                                              "created": created})

    # -- recording ------------------------------------------------------------------------

    async def _finish(self, execution_id: int, plan: RunStep, outcome: Outcome) -> Plan:
        """Record the step's outcome and decide what comes next in the same transaction: a
        run of safe steps costs one commit per step, and the next step is still committed
        as running before its action starts."""
        try:
            return await self._record(execution_id, plan, outcome, decide=True)
        except Exception as exc:
            if isinstance(exc, Unavailable) or is_database_unavailable(exc):
                raise
            # Deciding failed (and took the outcome down with it): keep the outcome.
            await self._record(execution_id, plan, outcome, decide=False)
            raise

    async def _record(self, execution_id: int, plan: RunStep, outcome: Outcome, *,
                      decide: bool) -> Plan:
        async def record(session: AsyncSession, execution: Execution) -> Plan:
            return await self._record_locked(session, execution, plan, outcome, decide=decide)

        if decide:  # shares a round with the other drivers' decisions
            return await self.rounds.run(execution_id, record)
        async with session_scope(self.factory) as session:
            return await record(session, await lock_execution(session, execution_id))

    async def _record_locked(self, session: AsyncSession, execution: Execution, plan: RunStep,
                             outcome: Outcome, *, decide: bool) -> Plan:
        # The execution first (locked by the caller), then its step: the order every
        # writer locks them in.
        run = await lock_step(session, plan.step_run_id)
        if run.status == states.STEP_RUNNING:
            await transition_step(
                session, run, outcome.status, actor=self.actor, reason=outcome.summary,
                summary=outcome.summary, output=outcome.output, error=outcome.error,
                finished_at=utcnow(), duration_ms=outcome.duration_ms,
                attempts=run.attempts + max(outcome.attempts - 1, 0),
            )
            seconds = outcome.duration_ms / 1000
            action = run.action
            after_commit(session, lambda: metrics.step_duration.labels(action)
                         .observe(seconds))
        if not decide:
            return Stop("recorded")
        # Cancelled while the step ran, or taken over: the step is recorded, and
        # deciding says so.
        if (execution.lease_owner == self.me and execution.status == states.RUNNING
                and plan.kind != "rollback"):
            runbook = await self.runbooks.get(session, execution.runbook_id,
                                              execution.runbook_version)
            step = runbook.step(run.step_id)
            if outcome.ok:
                await self._after_success(session, execution, runbook, step)
            else:
                await self._after_failure(session, execution, runbook, step,
                                          outcome.error or outcome.summary)
        return await self._decide(session, execution)

    # -- helpers --------------------------------------------------------------------------

    async def _dry_run(self, execution_id: int) -> bool:
        known = self._dry_runs.get(execution_id)
        if known is not None:
            return known
        async with session_scope(self.factory) as session:
            execution = await session.get(Execution, execution_id)
            return bool(execution and execution.dry_run)

    def _context(self, execution_id: int, step_id: str | None, dry_run: bool) -> ActionContext:
        return ActionContext(settings=self.settings, http=self.http, dry_run=dry_run,
                             execution_id=execution_id, step_id=step_id)

    def _idempotent(self, step: Step) -> bool:
        if step.idempotent is not None:
            return step.idempotent
        return bool(step.action in self.registry and self.registry.get(step.action).idempotent)

    def _timeout(self, step: Step, params: dict[str, Any]) -> float:
        """The step's timeout bounds its requests; an action that waits by design
        (airflow.wait, http.request with `until`) gets its declared wait on top."""
        bound = (step.timeout.total_seconds() if step.timeout is not None
                 else self.settings.default_step_timeout_seconds)
        return bound + waits_of(self.registry, step.action, params).at_most


async def _no_wait() -> None:
    return None


def _end_reason(runs: Iterable[StepRun]) -> str:
    """Why a finished execution succeeded, true to its path: a step that failed and was
    passed over (`on_failure: continue` or a goto), or skipped, is named."""
    steps = [r for r in runs if r.kind == "step"]
    failed = [r.step_id for r in steps if r.status in (states.STEP_FAILED,
                                                       states.STEP_TIMED_OUT)]
    skipped = [r.step_id for r in steps if r.status == states.STEP_SKIPPED]
    if not failed and not skipped:
        return "all steps succeeded"
    said = []
    if failed:
        said.append(f"step {', '.join(failed)} failed and the runbook went on")
    if skipped:
        said.append(f"step {', '.join(skipped)} skipped")
    return "finished: " + "; ".join(said)


def _checks(runbook: Runbook, context: dict[str, Any],
            ) -> tuple[tuple[str, dict[str, Any], float | None], ...]:
    out = []
    for check in runbook.preconditions:
        try:
            params = render_value(check.with_, context)
        except RenderError:
            params = check.with_  # fails validation in the check, with its own message
        out.append((check.action, params, check.within.total_seconds() if check.within else None))
    return tuple(out)


def _verify(step: Step, context: dict[str, Any]) -> tuple[str, dict[str, Any], float | None] | None:
    if step.verify is None:
        return None
    try:
        params = render_value(step.verify.with_, context)
    except RenderError:
        params = step.verify.with_  # fails validation in the check, with its own message
    within = step.verify.within.total_seconds() if step.verify.within else None
    return step.verify.action, params, within
