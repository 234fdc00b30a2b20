"""What happens after a step: advance, follow `on_failure`, roll back, or end the execution,
with its notifications and the circuit breaker. A part of the executor, kept apart to keep
each module readable; every state change still goes through `transition()`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.catalog.schema import Goto, Runbook, Step
from app.config import Settings
from app.db import after_commit, utcnow
from app.engine import states
from app.engine.context import approval_channels, failure_channels
from app.engine.drills import is_drill
from app.engine.drills_service import settle_drill
from app.engine.executions import rollback_run
from app.engine.feedback import feedback_ask, slack_of
from app.engine.guards import trip_breaker_if_needed
from app.engine.models import Execution, StepRun
from app.engine.transitions import add_step_run, transition_execution
from app.events import record_event
from app.notify.outbox import enqueue


class Outcomes:
    """Mixed into Executor, which provides `settings`, `me` (its lease) and `actor`."""

    settings: Settings
    me: str
    actor: str

    async def _advance(self, session: AsyncSession, execution: Execution, runbook: Runbook,
                       step: Step) -> None:
        index = runbook.step_index(step.id)
        execution.cursor = (runbook.steps[index + 1].id if index + 1 < len(runbook.steps)
                            else states.CURSOR_END)

    async def _after_success(self, session: AsyncSession, execution: Execution,
                             runbook: Runbook, step: Step) -> None:
        """Follow the step's `on_success`: the next step, a later one, or the end."""
        if is_drill(execution):  # a drill walks every step, so each gets its verdict
            await self._advance(session, execution, runbook, step)
            return
        policy = step.on_success
        if policy == "end":
            execution.cursor = states.CURSOR_END
        elif isinstance(policy, Goto) and (runbook.step_index(policy.goto)
                                           > runbook.step_index(step.id)):
            execution.cursor = policy.goto
            record_event(session, kind="step.goto", entity="execution", actor=self.actor,
                         execution_id=execution.id,
                         reason=f"step {step.id} succeeded; going to {policy.goto}")
        else:
            await self._advance(session, execution, runbook, step)

    async def _after_failure(self, session: AsyncSession, execution: Execution,
                             runbook: Runbook, step: Step, error: str) -> None:
        """Follow the step's `on_failure`: continue, go to a later step, roll back, or stop."""
        policy = step.on_failure
        reason = f"step {step.id} failed: {error}"[:2000]
        if is_drill(execution):  # a finding of the drill: it goes on, and undoes nothing
            await self._advance(session, execution, runbook, step)
            record_event(session, kind="step.failure_ignored", entity="execution",
                         actor=self.actor, execution_id=execution.id,
                         reason=f"drill: {reason}")
            return
        if policy == "continue":
            await self._advance(session, execution, runbook, step)
            record_event(session, kind="step.failure_ignored", entity="execution",
                         actor=self.actor, execution_id=execution.id, reason=reason)
            return
        if isinstance(policy, Goto) and (runbook.step_index(policy.goto)
                                         > runbook.step_index(step.id)):
            execution.cursor = policy.goto
            record_event(session, kind="step.goto", entity="execution", actor=self.actor,
                         execution_id=execution.id, reason=f"{reason}; going to {policy.goto}")
            return
        if policy == "rollback" and await self._queue_rollbacks(session, execution, runbook,
                                                                step):
            execution.cursor = states.CURSOR_ROLLBACK
            execution.status_reason = f"{reason}; rolled back"
            return
        await self._finish_execution(session, execution, runbook, succeeded=False,
                                     reason=reason)

    async def _queue_rollbacks(self, session: AsyncSession, execution: Execution,
                               runbook: Runbook, failed: Step) -> bool:
        """Queue the rollbacks of the failed step, if it started (it may have changed
        something before it failed), and of the steps that succeeded before it, newest first.
        A step that never started (no plan, a template that did not render) has nothing to
        undo."""
        runs = {r.step_id: r for r in (await session.execute(
            select(StepRun).where(StepRun.execution_id == execution.id,
                                  StepRun.kind == "step"))).scalars()}

        def changed(step: Step) -> bool:
            run = runs.get(step.id)
            if run is None:
                return False
            return (run.started_at is not None if step.id == failed.id
                    else run.status == states.STEP_SUCCEEDED)

        queued = False
        for step in runbook.steps[: runbook.step_index(failed.id) + 1]:
            if step.rollback is None or not changed(step):
                continue
            await add_step_run(session, rollback_run(execution, runbook, step))
            queued = True
        return queued

    async def _finish_execution(self, session: AsyncSession, execution: Execution,
                                runbook: Runbook, *, succeeded: bool, reason: str = "") -> None:
        if is_drill(execution):
            await self._move(session, execution,
                             states.SUCCEEDED if succeeded else states.FAILED,
                             reason=reason or "all steps succeeded")
            await settle_drill(session, execution, runbook, actor=self.actor)
            return
        if succeeded:
            await self._move(session, execution, states.SUCCEEDED,
                             reason=reason or "all steps succeeded")
            fired = execution.alert_fired_at
            if fired is not None:
                seconds = (utcnow() - fired).total_seconds()
                runbook_id = runbook.id
                after_commit(session, lambda: metrics.time_to_restore.labels(runbook_id)
                             .observe(seconds))
            # Those who took part are asked in Slack, where approvals were asked, if it helped.
            slack = slack_of(approval_channels(runbook))
            if slack and (ask := await feedback_ask(session, execution)):
                self._notify(session, execution, runbook, kind="succeeded", extra=ask,
                             channels=slack, text=reason or "all steps succeeded")
            return
        await self._move(session, execution, states.FAILED, reason=reason)
        self._notify(session, execution, runbook, kind="failed",
                     channels=failure_channels(runbook), text=reason,
                     extra=await feedback_ask(session, execution))
        breaker = getattr(runbook.limits, "breaker", None)
        failures = breaker.failures if breaker else self.settings.breaker_failures
        within = (breaker.within if breaker
                  else dt.timedelta(seconds=self.settings.breaker_window_seconds))
        if not execution.dry_run and await trip_breaker_if_needed(
                session, runbook.id, failures=failures, within=within):
            self._notify(session, execution, runbook, kind="breaker",
                         channels=failure_channels(runbook),
                         text=f"runbook {runbook.id} paused by its circuit breaker")

    async def _move(self, session: AsyncSession, execution: Execution, to_state: str, *,
                    reason: str, data: dict[str, Any] | None = None, **fields: Any) -> None:
        await transition_execution(session, execution, to_state, actor=self.actor,
                                   reason=reason, data=data, lease_owner=self.me, **fields)

    def _notify(self, session: AsyncSession, execution: Execution, runbook: Runbook, *,
                kind: str, channels: list[str], text: str, step: StepRun | None = None,
                extra: dict[str, Any] | None = None) -> None:
        payload = {
            "kind": kind, "text": text, "execution_id": execution.id, "runbook": runbook.id,
            "runbook_title": runbook.title, "severity": runbook.severity,
            "target": execution.target, "status": execution.status,
            "dry_run": execution.dry_run,
            "step_id": step.ref if step else None,
            "step_title": step.title if step else None,
            "action": step.action if step else None, **(extra or {}),
        }
        suffix = f"{kind}:{step.id}:{step.step_hash or ''}" if step else kind
        enqueue(session, kind=kind, channels=channels, payload=payload,
                execution_id=execution.id, step_run_id=step.id if step else None,
                dedup_key=f"runbookd-{execution.id}:{suffix}")
