"""Approve or reject a risky step (invariant 3). Every channel (API, Slack, signed link, web,
CLI) goes through `decide`, so the rules are the same everywhere: roles, quorum, separation of
duties, the hash of the rendered step, and expiry; `decision_blocker` is the one rule for who
may decide, which the pages ask too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.catalog.schema import ApprovalSpec
from app.db import after_commit, utcnow
from app.engine import states
from app.engine.executions import cancel_open_steps
from app.engine.models import Approval, Execution, StepRun
from app.engine.runbooks import RunbookSource
from app.engine.transitions import (
    lock_execution,
    remember_locked,
    transition_execution,
    transition_step,
)
from app.errors import Conflict, Forbidden, NotFound, PlanChanged
from app.events import record_event
from app.identity import Identity

Decision = Literal["approve", "reject"]
Channel = Literal["api", "web", "link", "slack", "cli"]
# Why an identity may not decide on a step: it lacks a role or name the step accepts, or it
# started the execution itself (separation of duties).
Blocker = Literal["not_eligible", "initiator"]


@dataclass(frozen=True, kw_only=True)
class DecisionRequest:
    """One person's decision as a channel received it, and the step hash they were shown."""

    execution_id: int
    step_id: str
    identity: Identity
    decision: Decision
    channel: Channel
    comment: str = ""
    source_addr: str | None = None
    seen_hash: str | None = None


@dataclass(frozen=True, kw_only=True)
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


class Admission(Protocol):
    """A channel's own check, run with the rows locked (a link checks whom it was sent to);
    it raises to refuse."""

    def __call__(self, execution: Execution, step: StepRun, spec: ApprovalSpec) -> None: ...


def may_approve(identity: Identity, spec: ApprovalSpec) -> bool:
    """Whether an identity counts toward this step's approvals."""
    if identity.name in spec.identities:
        return True
    return any(identity.has_role(role) for role in spec.roles)


def decision_blocker(identity: Identity, *, started_by: str | None,
                     spec: ApprovalSpec) -> Blocker | None:
    """Why `identity` may not decide on a step with this spec, or None when it may.

    The one rule for who may decide: `decide` enforces it and the pages ask it."""
    if not may_approve(identity, spec):
        return "not_eligible"
    if started_by is not None and started_by == identity.name:
        return "initiator"
    return None


def split_ref(ref: str) -> tuple[str, str]:
    """`change` to ("change", "step"); `change.rollback` to ("change", "rollback"). A step id
    never holds a dot, so the two cannot be confused."""
    step_id, dot, kind = ref.partition(".")
    return (step_id, kind) if dot and kind == "rollback" else (ref, "step")


def _run_of(execution_id: int, ref: str) -> Any:
    step_id, kind = split_ref(ref)
    return select(StepRun).where(StepRun.execution_id == execution_id,
                                 StepRun.step_id == step_id, StepRun.kind == kind)


async def lock_step_run(session: AsyncSession, execution_id: int, step_id: str) -> StepRun:
    """The step run of a runbook step (or of its rollback, `<step>.rollback`), locked;
    NotFound when it has not been reached yet."""
    step = (await session.execute(
        _run_of(execution_id, step_id).with_for_update()
        .execution_options(populate_existing=True)
    )).scalar_one_or_none()
    if step is None:
        raise NotFound(f"execution {execution_id} has no step {step_id!r} waiting or run yet")
    remember_locked(session, step)
    return step


async def find_step_run(session: AsyncSession, execution_id: int, step_id: str) -> StepRun:
    """The step run of a runbook step or its rollback, unlocked (for pages and links that
    only read)."""
    step = (await session.execute(_run_of(execution_id, step_id))).scalar_one_or_none()
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


async def _replace_earlier_decision(session: AsyncSession, step: StepRun, identity: str,
                                    decision: Decision) -> str | None:
    """Void this identity's standing decision on the step's current hash, if it has one;
    returns what that decision was."""
    earlier = (await session.execute(
        select(Approval).where(Approval.step_run_id == step.id, Approval.identity == identity,
                               Approval.step_hash == step.step_hash,
                               Approval.voided_at.is_(None))
    )).scalar_one_or_none()
    if earlier is None:
        return None
    earlier.voided_at = utcnow()
    earlier.void_reason = f"replaced by a later decision ({decision}) of {identity}"
    # The partial unique index admits the new row only once this one is voided.
    await session.flush()
    return earlier.decision


async def decide(
    session: AsyncSession, request: DecisionRequest, *, runbooks: RunbookSource,
    admit: Admission | None = None, on_approved: Callable[[], None] | None = None,
) -> ApprovalOutcome:
    """Record one decision; with quorum the step becomes approved and the execution runnable.

    The one approval path: the API, the web form, links, Slack and the CLI all call it. It
    locks the execution and the step once, checks every rule, and records the decision and
    its event in the caller's transaction.
    """
    execution_id, step_id, identity = request.execution_id, request.step_id, request.identity
    decision, comment, source_addr = request.decision, request.comment, request.source_addr
    execution = await lock_execution(session, execution_id)
    runbook = await runbooks.get(session, execution.runbook_id, execution.runbook_version)
    step = await lock_step_run(session, execution_id, step_id)
    # A rollback is approved by those who approve its step.
    spec = runbook.step(step.step_id).approvals or ApprovalSpec()
    if admit is not None:
        admit(execution, step, spec)
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
    if request.seen_hash is not None and request.seen_hash != step.step_hash:
        now_plan = (step.plan or {}).get("summary")
        raise PlanChanged(f"step {step_id} changed since this approval was requested; review "
                          "it again" + (f": the plan is now {now_plan}" if now_plan else ""),
                          current_state=step.status, plan=step.plan, plan_hash=step.step_hash)
    blocker = decision_blocker(identity, started_by=execution.started_by, spec=spec)
    if blocker == "not_eligible":
        who = ", ".join(spec.roles + spec.identities)
        raise Forbidden(f"identity {identity.name!r} may not decide on step {step_id}: "
                        f"it needs one of {who}")
    if blocker == "initiator":
        raise Forbidden(f"identity {identity.name!r} started execution {execution_id} and "
                        "cannot approve its risky steps (separation of duties)")

    def outcome(*, approvals: int, step_status: str, execution_status: str,
                counted: bool = True) -> ApprovalOutcome:
        return ApprovalOutcome(execution_id=execution_id, step_id=step_id, decision=decision,
                               approvals=approvals, required=spec.count,
                               step_status=step_status, execution_status=execution_status,
                               counted=counted)

    approvers = await valid_approvers(session, step)
    if decision == "approve" and identity.name in approvers:
        return outcome(approvals=len(approvers), step_status=step.status,
                       execution_status=execution.status, counted=False)
    # A later decision by the same person replaces the earlier one; both stay recorded.
    replaced = await _replace_earlier_decision(session, step, identity.name, decision)
    approvers.discard(identity.name)

    session.add(Approval(
        execution_id=execution_id, step_run_id=step.id, identity=identity.name,
        decision=decision, comment=comment, step_hash=step.step_hash or "",
        channel=request.channel, source_addr=source_addr, created_at=now,
    ))
    record_event(
        session, kind=f"approval.{decision}", entity="step", actor=identity.name,
        execution_id=execution_id, step_run_id=step.id, step_id=step_id,
        source_addr=source_addr, reason=comment,
        data={"channel": request.channel, "step_hash": step.step_hash,
              **({"replaces": replaced} if replaced else {})},
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
        return outcome(approvals=len(approvers), step_status=states.STEP_REJECTED,
                       execution_status=states.REJECTED)

    approvers.add(identity.name)
    if len(approvers) < spec.count:
        return outcome(approvals=len(approvers), step_status=step.status,
                       execution_status=execution.status)
    await transition_step(session, step, states.STEP_APPROVED, actor=identity.name,
                          reason=f"approved by {', '.join(sorted(approvers))}",
                          next_escalation_at=None)
    await transition_execution(session, execution, states.PENDING, actor=identity.name,
                               reason=f"step {step_id} approved", wake_at=None)
    if waited is not None:
        after_commit(session, lambda: metrics.approval_wait.observe(waited))
    if on_approved is not None:
        after_commit(session, on_approved)
    return outcome(approvals=len(approvers), step_status=states.STEP_APPROVED,
                   execution_status=states.PENDING)
