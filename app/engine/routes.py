"""Executions, approvals and guards over HTTP. Thin: look up, call the service, return."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from app.catalog.params import ParamError, render_target, validate_manual_params
from app.catalog.templating import RenderError
from app.db import SessionDep, after_commit
from app.engine import states
from app.engine.approvals import DecisionRequest, decide
from app.engine.brake_routes import BrakeOut, brakes_out
from app.engine.executions import (
    cancel_execution,
    resolve_attention,
    start_rollback,
)
from app.engine.guards import GLOBAL, current_guard_state, runbook_key, set_guard
from app.engine.schemas import ExecutionOut
from app.engine.services import EngineRuntime
from app.engine.starts import start_or_attach
from app.engine.transitions import lock_execution
from app.errors import Conflict, Invalid
from app.identity import Identity
from app.identity.deps import require
from app.paging import RowId

router = APIRouter(prefix="/api/v1", tags=["executions"])

Viewer = Annotated[Identity, Depends(require("viewer"))]
Responder = Annotated[Identity, Depends(require("responder"))]
Approver = Annotated[Identity, Depends(require("approver"))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartExecution(_Body):
    runbook: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False


class Comment(_Body):
    comment: str = Field(default="", max_length=4000)


class DecisionBody(Comment):
    # The step hash (it covers the plan) the approver reviewed; a mismatch is a 409 that
    # shows the current plan. Optional for scripts; the web form and the CLI always send it.
    plan_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class GuardReason(_Body):
    # `reason` everywhere a guard changes (CLI, web forms, events); `comment` was the pause
    # body's word and is still accepted so that scripts written against it keep working.
    reason: str = Field(default="", max_length=2000,
                        validation_alias=AliasChoices("reason", "comment"))


class GuardChange(GuardReason):
    engaged: bool


class DecisionOut(BaseModel):
    execution_id: int
    step_id: str
    decision: Literal["approve", "reject"]
    approvals: int
    required: int
    step_status: str
    execution_status: str
    counted: bool


class GuardsOut(BaseModel):
    kill_switch: bool
    kill_reason: str
    paused: dict[str, str]
    brakes: list[BrakeOut] = Field(default_factory=list)  # storm brakes that ever engaged


def _engine(request: Request) -> EngineRuntime:
    return request.app.state.engine


def _addr(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/executions", response_model=ExecutionOut, status_code=201,
             responses={404: {}, 409: {}, 422: {}})
async def start_execution(body: StartExecution, request: Request, session: SessionDep,
                          identity: Responder) -> ExecutionOut:
    """Start a runbook by hand (responder role); `dry_run` makes it a drill."""
    engine = _engine(request)
    loaded = engine.current(body.runbook)
    try:
        params = validate_manual_params(loaded.runbook, body.params)
        target = render_target(loaded.runbook, params)
    except (ParamError, RenderError, ValueError) as exc:
        raise Invalid(str(exc), details=[{"field": "params", "message": str(exc)}]) from None
    execution, created = await start_or_attach(
        session, runbook=loaded.runbook, version=loaded.version, target=target, params=params,
        alert_id=None, alert_fired_at=None, actor=identity.name, trigger="manual",
        started_by=identity.name, dry_run=body.dry_run,
    )
    if not created:
        raise Conflict(f"execution {execution.id} is already active on {target}; "
                       "cancel it or wait for it", current_state=execution.status)
    after_commit(session, engine.wake)
    return ExecutionOut.of(execution)


async def _decide(request: Request, session: SessionDep, identity: Identity, execution_id: int,
                  step_id: str, body: DecisionBody, decision: Literal["approve", "reject"],
                  ) -> DecisionOut:
    engine = _engine(request)
    outcome = await decide(session, DecisionRequest(
        execution_id=execution_id, step_id=step_id, identity=identity, decision=decision,
        channel="api", comment=body.comment, source_addr=_addr(request),
        seen_hash=body.plan_hash,
    ), runbooks=engine.runbooks, on_approved=engine.wake)
    return DecisionOut(**outcome.as_dict())


@router.post("/executions/{execution_id}/steps/{step_id}/approve", response_model=DecisionOut,
             responses={403: {}, 404: {}, 409: {}})
async def approve_step(execution_id: RowId, step_id: str, request: Request, session: SessionDep,
                       identity: Viewer, body: DecisionBody | None = None) -> DecisionOut:
    """Approve a risky step's plan; with quorum it runs at once."""
    return await _decide(request, session, identity, execution_id, step_id, body or DecisionBody(),
                         "approve")


@router.post("/executions/{execution_id}/steps/{step_id}/reject", response_model=DecisionOut,
             responses={403: {}, 404: {}, 409: {}})
async def reject_step(execution_id: RowId, step_id: str, request: Request, session: SessionDep,
                      identity: Viewer, body: DecisionBody | None = None) -> DecisionOut:
    """Reject a risky step; the execution ends as rejected."""
    return await _decide(request, session, identity, execution_id, step_id, body or DecisionBody(),
                         "reject")


@router.post("/executions/{execution_id}/cancel", response_model=ExecutionOut,
             responses={404: {}, 409: {}})
async def cancel(execution_id: RowId, request: Request, session: SessionDep, identity: Responder,
                 body: Comment | None = None) -> ExecutionOut:
    """Cancel an active execution; a step already running finishes."""
    comment = (body or Comment()).comment
    execution = await cancel_execution(session, execution_id, actor=identity.name,
                                       reason=comment or f"cancelled by {identity.name}",
                                       source_addr=_addr(request))
    return ExecutionOut.of(execution)


class RollbackBody(_Body):
    reason: str = Field(default="", max_length=4000)


@router.post("/executions/{execution_id}/steps/{step_id}/rollback", response_model=ExecutionOut,
             status_code=201, responses={403: {}, 404: {}, 409: {}})
async def rollback_step(execution_id: RowId, step_id: str, request: Request,
                        session: SessionDep, identity: Responder,
                        body: RollbackBody | None = None) -> ExecutionOut:
    """Start a step's declared rollback by hand, as a new execution linked to this one; the
    rollback of a risky step then waits for the step's approvers."""
    engine = _engine(request)
    execution = await start_rollback(session, execution_id, step_id, runbook_of=engine.runbooks,
                                     actor=identity.name, reason=(body or RollbackBody()).reason,
                                     source_addr=_addr(request))
    after_commit(session, engine.wake)
    return ExecutionOut.of(execution)


@router.post("/executions/{execution_id}/{choice}", response_model=ExecutionOut,
             responses={404: {}, 409: {}})
async def attention(execution_id: RowId, choice: Literal["retry", "skip", "abort"],
                    request: Request, session: SessionDep, identity: Responder,
                    body: Comment | None = None) -> ExecutionOut:
    """For an execution in needs_attention: retry or skip the interrupted step, or abort."""
    engine = _engine(request)
    execution = await lock_execution(session, execution_id)
    runbook = await engine.runbooks.get(session, execution.runbook_id, execution.runbook_version)
    execution = await resolve_attention(session, execution_id, choice=choice, runbook=runbook,
                                        actor=identity.name, comment=(body or Comment()).comment,
                                        source_addr=_addr(request))
    if execution.status == states.PENDING:
        after_commit(session, engine.wake)
    return ExecutionOut.of(execution)


guards_router = APIRouter(prefix="/api/v1/guards", tags=["guards"])


@guards_router.get("", response_model=GuardsOut)
async def get_guards(session: SessionDep, _: Viewer) -> GuardsOut:
    """The kill switch, every paused runbook (by hand or by a circuit breaker) and the storm
    brakes."""
    state = await current_guard_state(session)
    return GuardsOut(kill_switch=state.kill_switch, kill_reason=state.kill_reason,
                     paused=state.paused, brakes=await brakes_out(session))


@guards_router.post("/kill-switch", response_model=GuardsOut)
async def kill_switch(body: GuardChange, request: Request, session: SessionDep,
                      identity: Responder) -> GuardsOut:
    """Stop (or release) all automation; waiting work resumes on release."""
    await set_guard(session, GLOBAL, engaged=body.engaged, actor=identity.name,
                    reason=body.reason, source_addr=_addr(request))
    after_commit(session, _engine(request).wake)
    return await get_guards(session, identity)


@guards_router.post("/runbooks/{runbook_id}/{verb}", response_model=GuardsOut,
                    responses={404: {}})
async def pause_runbook(runbook_id: str, verb: Literal["pause", "resume"], request: Request,
                        session: SessionDep, identity: Responder,
                        body: GuardReason | None = None) -> GuardsOut:
    """Pause or resume one runbook."""
    _engine(request).current(runbook_id)
    await set_guard(session, runbook_key(runbook_id), engaged=verb == "pause",
                    actor=identity.name, reason=(body or GuardReason()).reason,
                    source_addr=_addr(request))
    after_commit(session, _engine(request).wake)
    return await get_guards(session, identity)
