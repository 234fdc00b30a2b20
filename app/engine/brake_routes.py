"""The storm brakes over HTTP: GET /api/v1/guards lists them (`brakes`); release or abort."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from app.db import SessionDep, after_commit
from app.engine.brakes import BrakeView, list_brakes, release_brake
from app.identity import Identity
from app.identity.deps import require

router = APIRouter(prefix="/api/v1/guards/brakes", tags=["guards"])

Responder = Annotated[Identity, Depends(require("responder"))]
Scope = Annotated[str, Field(pattern=r"^(global|runbook:[a-z0-9][a-z0-9-]{0,62})$")]


class HeldOut(BaseModel):
    execution_id: int
    runbook: str
    target: str
    status: str


class BrakeOut(BaseModel):
    scope: str
    engaged: bool
    limit_targets: int
    within_seconds: int
    targets: list[str]  # the distinct targets it counted when it engaged
    engaged_at: dt.datetime | None
    released_at: dt.datetime | None
    reason: str
    updated_at: dt.datetime
    updated_by: str
    held: list[HeldOut]  # the executions it holds now

    @classmethod
    def of(cls, view: BrakeView) -> BrakeOut:
        return cls(scope=view.scope, engaged=view.engaged, limit_targets=view.limit_targets,
                   within_seconds=view.within_seconds, targets=view.targets,
                   engaged_at=view.engaged_at, released_at=view.released_at,
                   reason=view.reason, updated_at=view.updated_at, updated_by=view.updated_by,
                   held=[HeldOut(execution_id=h.execution_id, runbook=h.runbook_id,
                                 target=h.target, status=h.status) for h in view.held])


class BrakeDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = "global"
    reason: str = Field(min_length=1, max_length=2000)


class BrakeDecisionOut(BaseModel):
    scope: str
    verb: Literal["release", "abort"]
    execution_ids: list[int]


async def brakes_out(session: SessionDep) -> list[BrakeOut]:
    """Every brake that ever engaged, with what it holds."""
    return [BrakeOut.of(view) for view in await list_brakes(session)]


@router.post("/{verb}", response_model=BrakeDecisionOut, responses={404: {}, 409: {}})
async def decide_brake(verb: Literal["release", "abort"], body: BrakeDecision,
                       request: Request, session: SessionDep,
                       identity: Responder) -> BrakeDecisionOut:
    """Release an engaged brake (its held executions start) or abort them (cancelled)."""
    outcome = await release_brake(
        session, body.scope, abort=verb == "abort", actor=identity.name, reason=body.reason,
        source_addr=request.client.host if request.client else None)
    after_commit(session, request.app.state.engine.wake)
    return BrakeDecisionOut(scope=outcome.scope, verb=verb,
                            execution_ids=list(outcome.execution_ids))
