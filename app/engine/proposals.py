"""Risky steps: make the plan, ask for approval of it, and check it again before running.

A part of the executor, kept apart to keep each module readable. The plan is made outside any
transaction (it may read MLflow, Airflow or a registry), then recorded in a short one, as the
step's own action is. Invariant 3: an approval covers the action, its parameters and the plan;
a plan that resolves differently just before the step runs voids the approvals and asks again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.actions.base import ActionContext, ActionPlan
from app.actions.registry import ActionRegistry
from app.catalog.schema import ApprovalSpec, Runbook, Step
from app.catalog.signoff_reviews import overdue_hold, review_of
from app.config import Settings
from app.db import session_scope, utcnow
from app.engine import states
from app.engine.context import approval_channels, approval_deadlines
from app.engine.executions import void_approvals
from app.engine.models import Execution, StepRun
from app.engine.runbooks import RunbookVersions
from app.engine.runner import PlanFailed, plan_action, step_hash
from app.engine.transitions import lock_execution, lock_step, transition_step
from app.events import record_event


@dataclass(frozen=True, kw_only=True)
class ProposePlan:
    """A risky step that needs its plan made and its approval asked for."""

    step_run_id: int
    action: str
    params: dict[str, Any]
    timeout: float
    # Why approvals given earlier no longer count, when they do not ("" the first time).
    revote_reason: str = ""


class Proposals:
    """Mixed into Executor, which provides these attributes and the methods below."""

    settings: Settings
    factory: async_sessionmaker[AsyncSession]
    registry: ActionRegistry
    runbooks: RunbookVersions
    me: str
    actor: str

    if TYPE_CHECKING:  # provided by Executor and Outcomes, beside which this is mixed in
        def _context(self, execution_id: int, step_id: str | None,
                     dry_run: bool) -> ActionContext: ...

        async def _move(self, session: AsyncSession, execution: Execution, to_state: str, *,
                        reason: str, **fields: Any) -> None: ...

        def _notify(self, session: AsyncSession, execution: Execution, runbook: Runbook, *,
                    kind: str, channels: list[str], text: str, step: StepRun | None = None,
                    extra: dict[str, Any] | None = None) -> None: ...

        async def _after_failure(self, session: AsyncSession, execution: Execution,
                                 runbook: Runbook, step: Step, error: str) -> None: ...

    async def _make_plan(self, execution_id: int, step_run_id: int, action: str,
                         params: dict[str, Any], timeout: float,
                         dry_run: bool) -> ActionPlan | str:
        """The step's plan, or why it cannot be made. Read-only, outside any transaction."""
        ctx = self._context(execution_id, str(step_run_id), dry_run)
        try:
            return await plan_action(self.registry, ctx, action, params, timeout=timeout)
        except PlanFailed as exc:
            return exc.message

    async def _propose(self, execution_id: int, proposal: ProposePlan, dry_run: bool) -> None:
        """Make the plan, then wait for approval of it (or fail the step without one)."""
        plan = await self._make_plan(execution_id, proposal.step_run_id, proposal.action,
                                     proposal.params, proposal.timeout, dry_run)
        async with session_scope(self.factory) as session:
            held = await self._still_ours(session, execution_id, proposal.step_run_id,
                                          {states.STEP_PENDING, states.STEP_APPROVED})
            if held is None:
                return
            execution, run, runbook = held
            step = runbook.step(run.step_id)
            if isinstance(plan, str):
                await self._fail_unplanned(session, execution, runbook, step, run, plan)
                return
            # Any approval standing from before (a retry after a crash, a changed step)
            # was given for another run of this step: a full quorum is needed again.
            voided = await void_approvals(
                session, run, reason=proposal.revote_reason or "the step is asked again",
                actor=self.actor)
            await self._request_approval(session, execution, runbook, step, run,
                                         proposal.params, plan,
                                         reason=proposal.revote_reason if voided else "")

    async def _confirm_plan(self, execution_id: int, step_run_id: int, action: str,
                            params: dict[str, Any], approved: ActionPlan, timeout: float,
                            dry_run: bool) -> bool:
        """Resolve the plan again just before an approved step runs: True when it is the
        plan that was approved; otherwise the approvals are void and approval is asked for
        the new plan (or the step fails when no plan can be made)."""
        fresh = await self._make_plan(execution_id, step_run_id, action, params, timeout,
                                      dry_run)
        if isinstance(fresh, ActionPlan) and fresh.resolved == approved.resolved:
            return True
        async with session_scope(self.factory) as session:
            held = await self._still_ours(session, execution_id, step_run_id,
                                          {states.STEP_APPROVED})
            if held is None:
                return False
            execution, run, runbook = held
            step = runbook.step(run.step_id)
            if isinstance(fresh, str):
                await self._fail_unplanned(session, execution, runbook, step, run, fresh)
                return False
            reason = (f"the plan changed since it was approved: {approved.summary} "
                      f"→ now {fresh.summary}")
            record_event(session, kind="step.plan_changed", entity="step", actor=self.actor,
                         execution_id=execution_id, step_run_id=run.id, step_id=run.step_id,
                         reason=reason, data={"approved": approved.as_dict(),
                                              "now": fresh.as_dict()})
            await void_approvals(session, run, reason=reason, actor=self.actor)
            await self._request_approval(session, execution, runbook, step, run, params, fresh,
                                         reason=reason)
        return False

    async def _still_ours(self, session: AsyncSession, execution_id: int, step_run_id: int,
                          step_states: set[str]) -> tuple[Execution, StepRun, Runbook] | None:
        """The execution, step run and runbook, locked, if this worker still drives the
        step in one of `step_states`; None when the world moved on meanwhile."""
        execution = await lock_execution(session, execution_id)
        if execution.lease_owner != self.me or execution.status != states.RUNNING:
            return None
        run = await lock_step(session, step_run_id)
        if run.status not in step_states:
            return None
        runbook = await self.runbooks.get(session, execution.runbook_id,
                                          execution.runbook_version)
        return execution, run, runbook

    async def _fail_unplanned(self, session: AsyncSession, execution: Execution,
                              runbook: Runbook, step: Step, run: StepRun, why: str) -> None:
        """No plan, no approval: the step fails and the runbook's on_failure applies (a
        rollback that fails leaves the next rollback to run)."""
        message = why if why.startswith("cannot plan") else f"no plan: {why}"
        await transition_step(session, run, states.STEP_FAILED, actor=self.actor,
                              reason=message, error=message, finished_at=utcnow())
        if run.kind == "step":
            await self._after_failure(session, execution, runbook, step, message)

    async def _request_approval(
        self, session: AsyncSession, execution: Execution, runbook: Runbook, step: Step,
        run: StepRun, params: dict[str, Any], plan: ActionPlan, *, reason: str = "",
    ) -> None:
        now = utcnow()
        default = dt.timedelta(seconds=self.settings.default_approval_timeout_seconds)
        expires, next_due = approval_deadlines(runbook, step, now, default)
        if self.settings.require_review:
            # The one approval path carries the overdue review: the plan (which the hash
            # binds and every channel shows) says that approving accepts it.
            review = await review_of(session, runbook, now)
            if review.overdue:
                plan = replace(plan, summary=f"{plan.summary} [{overdue_hold(review)}]")
                record_event(session, kind="review.hold", entity="step", actor=self.actor,
                             execution_id=execution.id, step_run_id=run.id,
                             step_id=run.step_id, reason=overdue_hold(review),
                             data={"overdue_since": review.due_at.isoformat()})
        digest = step_hash(run.action, params, plan)  # a rollback's own action
        await transition_step(session, run, states.STEP_AWAITING_APPROVAL, actor=self.actor,
                              reason=(f"{reason}; earlier approvals are void" if reason
                                      else "risky step needs approval"),
                              params=params, step_hash=digest, plan=plan.as_dict(),
                              awaiting_since=now, approval_expires_at=expires,
                              next_escalation_at=next_due, escalation_level=0,
                              data={"plan": plan.summary})
        await self._move(session, execution, states.AWAITING_APPROVAL,
                         reason=f"step {run.ref} awaits approval")
        spec = step.approvals or ApprovalSpec()
        self._notify(session, execution, runbook, kind="approval_request",
                     channels=approval_channels(runbook), step=run,
                     text=f"{run.title}: approval needed ({spec.count} of "
                          f"{', '.join(spec.roles + spec.identities)})",
                     extra={"params": params, "step_hash": digest, "plan": plan.summary,
                            "required": spec.count, "expires_at": expires.isoformat()})
