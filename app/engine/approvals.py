"""Approve or reject a risky step (invariant 3). Every channel (API, Slack, signed link, web,
CLI) goes through `decide`, so the rules are the same everywhere: roles, quorum, separation of
duties, the hash of the rendered step, and expiry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.catalog.schema import ApprovalSpec, Runbook
from app.db import after_commit, utcnow
from app.engine import states
from app.engine.executions import cancel_open_steps
from app.engine.models import Approval, StepRun
from app.engine.transitions import lock_execution, lock_step, transition_execution, transition_step
from app.errors import Conflict, Forbidden, NotFound
from app.events import record_event
from app.identity import Identity

Decision = Literal["approve", "reject"]


@dataclass(frozen=True)
class ApprovalOutcome:
    execution_id: int
    step_id: str
    decision: Decision
    approvals: int
    required: int
    step_status: str
    execution_status: str
    counted: bool  # False when this identity had already approved this exact step

    def as_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id, "step_id": self.step_id,
            "decision": self.decision, "approvals": self.approvals, "required": self.required,
            "step_status": self.step_status, "execution_status": self.execution_status,
            "counted": self.counted,
        }


def may_approve(identity: Identity, spec: ApprovalSpec) -> bool:
    """Whether an identity counts toward this step's approvals."""
    if identity.name in spec.identities:
        return True
    return any(identity.has_role(role) for role in spec.roles)


async def find_step_run(session: AsyncSession, execution_id: int, step_id: str) -> StepRun:
    step = (await session.execute(
        select(StepRun).where(StepRun.execution_id == execution_id, StepRun.step_id == step_id,
                              StepRun.kind == "step")
    )).scalar_one_or_none()
    if step is None:
        raise NotFound(f"execution {execution_id} has no step {step_id!r} waiting or run yet")
    return step


async def valid_approvers(session: AsyncSession, step: StepRun) -> set[str]:
    """Distinct identities whose approval of the step's current hash still stands."""
    rows = await session.execute(
        select(Approval.identity).where(
            Approval.step_run_id == step.id, Approval.decision == "approve",
            Approval.step_hash == step.step_hash, Approval.voided_at.is_(None),
        )
    )
    return set(rows.scalars())


async def decide(
    session: AsyncSession, *, execution_id: int, step_id: str, identity: Identity,
    decision: Decision, comment: str, channel: str, runbook: Runbook,
    source_addr: str | None = None, expected_hash: str | None = None,
    on_approved: Any = None,
) -> ApprovalOutcome:
    """Record one decision; with quorum the step becomes approved and the execution runnable."""
    execution = await lock_execution(session, execution_id)
    step = await lock_step(session, (await find_step_run(session, execution_id, step_id)).id)
    spec = runbook.step(step_id).approvals or ApprovalSpec()
    if execution.status != states.AWAITING_APPROVAL or step.status != states.STEP_AWAITING_APPROVAL:
        current = execution.status if execution.status in states.FINAL_EXECUTION else step.status
        raise Conflict(f"step {step_id} of execution {execution_id} is not awaiting approval "
                       f"(execution {execution.status}, step {step.status})",
                       current_state=current)
    now = utcnow()
    if step.approval_expires_at is not None and now >= step.approval_expires_at:
        raise Conflict(f"the approval window of step {step_id} closed at "
                       f"{step.approval_expires_at.isoformat(timespec='seconds')}",
                       current_state=states.STEP_EXPIRED)
    if expected_hash is not None and expected_hash != step.step_hash:
        raise Conflict(f"step {step_id} changed since this approval was requested; "
                       "review it again", current_state=step.status)
    if not may_approve(identity, spec):
        who = ", ".join(spec.roles + spec.identities)
        raise Forbidden(f"identity {identity.name!r} may not decide on step {step_id}: "
                        f"it needs one of {who}")
    if execution.started_by is not None and execution.started_by == identity.name:
        raise Forbidden(f"identity {identity.name!r} started execution {execution_id} and "
                        "cannot approve its risky steps (separation of duties)")

    approvers = await valid_approvers(session, step)
    if decision == "approve" and identity.name in approvers:
        return ApprovalOutcome(execution_id, step_id, decision, len(approvers), spec.count,
                               step.status, execution.status, counted=False)

    session.add(Approval(
        execution_id=execution_id, step_run_id=step.id, identity=identity.name,
        decision=decision, comment=comment, step_hash=step.step_hash or "", channel=channel,
        source_addr=source_addr, created_at=now,
    ))
    record_event(
        session, kind=f"approval.{decision}", entity="step", actor=identity.name,
        execution_id=execution_id, step_run_id=step.id, step_id=step_id,
        source_addr=source_addr, reason=comment,
        data={"channel": channel, "step_hash": step.step_hash},
    )
    waited = (now - step.awaiting_since).total_seconds() if step.awaiting_since else None

    if decision == "reject":
        await transition_step(session, step, states.STEP_REJECTED, actor=identity.name,
                              reason=comment or "rejected", next_escalation_at=None)
        await cancel_open_steps(session, execution_id, actor=identity.name,
                                reason=f"step {step_id} was rejected")
        await transition_execution(session, execution, states.REJECTED, actor=identity.name,
                                   reason=f"step {step_id} rejected by {identity.name}",
                                   source_addr=source_addr)
        return ApprovalOutcome(execution_id, step_id, decision, len(approvers), spec.count,
                               states.STEP_REJECTED, states.REJECTED, counted=True)

    approvers.add(identity.name)
    if len(approvers) < spec.count:
        return ApprovalOutcome(execution_id, step_id, decision, len(approvers), spec.count,
                               step.status, execution.status, counted=True)
    await transition_step(session, step, states.STEP_APPROVED, actor=identity.name,
                          reason=f"approved by {', '.join(sorted(approvers))}",
                          next_escalation_at=None)
    await transition_execution(session, execution, states.PENDING, actor=identity.name,
                               reason=f"step {step_id} approved", wake_at=None)
    if waited is not None:
        after_commit(session, lambda: metrics.approval_wait.observe(waited))
    if on_approved is not None:
        after_commit(session, on_approved)
    return ApprovalOutcome(execution_id, step_id, decision, len(approvers), spec.count,
                           states.STEP_APPROVED, states.PENDING, counted=True)
