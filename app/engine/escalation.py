"""Approval timers: walk a waiting step's escalation tiers, then expire it.

Each tier fires once, at `awaiting_since + after`, leaving an event and a notification. The
step expires at its `approval_expires_at`, after the last tier, and its execution ends as
`expired`. Rows are taken with SKIP LOCKED, so replicas share the work without doubling it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import session_scope, utcnow
from app.engine import states
from app.engine.executions import cancel_open_steps
from app.engine.models import StepRun
from app.engine.runbooks import RunbookVersions
from app.engine.transitions import lock_execution, transition_execution, transition_step
from app.events import record_event
from app.notify.outbox import enqueue


async def process_due_approvals(factory: async_sessionmaker[AsyncSession],
                                runbooks: RunbookVersions, *, batch: int = 20) -> int:
    """Fire due escalation tiers and expire overdue approvals. Returns how many steps moved."""
    now = utcnow()
    async with session_scope(factory) as session:
        due = (await session.execute(
            select(StepRun).where(StepRun.status == states.STEP_AWAITING_APPROVAL,
                                  StepRun.next_escalation_at <= now)
            .order_by(StepRun.next_escalation_at).limit(batch)
            .with_for_update(skip_locked=True)
        )).scalars().all()
        for step in due:
            execution = await lock_execution(session, step.execution_id)
            runbook = await runbooks.get(session, execution.runbook_id,
                                                  execution.runbook_version)
            tiers = runbook.escalation
            since = step.awaiting_since or now
            base = {"execution_id": execution.id, "runbook": runbook.id,
                    "runbook_title": runbook.title, "target": execution.target,
                    "step_id": step.ref, "step_title": step.title, "action": step.action,
                    "severity": runbook.severity, "dry_run": execution.dry_run}
            while step.escalation_level < len(tiers) and since + tiers[
                    step.escalation_level].after <= now:
                tier = tiers[step.escalation_level]
                step.escalation_level += 1
                text = (f"{step.title}: still awaiting approval after "
                        f"{int((now - since).total_seconds())}s (tier {step.escalation_level})")
                record_event(session, kind="approval.escalated", entity="step",
                             actor="system:escalation", execution_id=execution.id,
                             step_run_id=step.id, step_id=step.step_id, reason=text,
                             data={"tier": step.escalation_level, "notify": tier.notify})
                enqueue(session, kind="escalation", channels=tier.notify,
                        payload={**base, "kind": "escalation", "text": text,
                                 "tier": step.escalation_level},
                        execution_id=execution.id, step_run_id=step.id,
                        dedup_key=f"runbookd-{execution.id}:escalation:{step.id}:"
                                  f"{step.escalation_level}")
            expires = step.approval_expires_at or now
            if now >= expires:
                reason = f"no approval for step {step.step_id} before it expired"
                await transition_step(session, step, states.STEP_EXPIRED,
                                      actor="system:escalation", reason=reason,
                                      next_escalation_at=None)
                await cancel_open_steps(session, execution.id, actor="system:escalation",
                                        reason=reason)
                await transition_execution(session, execution, states.EXPIRED,
                                           actor="system:escalation", reason=reason)
                last = tiers[-1].notify if tiers else []
                enqueue(session, kind="expired", channels=last,
                        payload={**base, "kind": "expired", "text": reason},
                        execution_id=execution.id, step_run_id=step.id,
                        dedup_key=f"runbookd-{execution.id}:expired:{step.id}")
                continue
            upcoming = (since + tiers[step.escalation_level].after
                        if step.escalation_level < len(tiers) else expires)
            step.next_escalation_at = min(upcoming, expires)
        return len(due)
