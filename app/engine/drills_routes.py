"""Drills over HTTP: start one by hand, read a runbook's latest. Thin: look up, call, return."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from app.catalog.schema import SLUG
from app.db import SessionDep, after_commit, utcnow
from app.durations import format_duration
from app.engine.drills_models import DrillRun
from app.engine.drills_scheduler import next_due
from app.engine.drills_service import DrillParamsInvalid, drill_params, latest_drills, start_drill
from app.engine.services import EngineRuntime
from app.errors import Invalid, NotFound
from app.identity import Identity
from app.identity.deps import require
from app.paging import RowId

router = APIRouter(prefix="/api/v1/runbooks", tags=["drills"])

Viewer = Annotated[Identity, Depends(require("viewer"))]
Responder = Annotated[Identity, Depends(require("responder"))]
# A runbook id as the catalog spells them: anything else names no runbook.
RunbookId = Annotated[str, Path(pattern=SLUG, max_length=64)]


class StartDrill(BaseModel):
    """The params of the drill; none: the runbook's `drill.params`."""

    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict, max_length=64)


class VerdictOut(BaseModel):
    step: str
    title: str
    action: str
    kind: str
    ok: bool
    reason: str


class DrillOut(BaseModel):
    id: int
    runbook_id: str
    runbook_version: str
    due_at: dt.datetime
    trigger: str
    started_by: str
    phase: str  # running | finished | skipped
    reason: str
    execution_id: int | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    problems: int
    verdicts: list[VerdictOut]

    @classmethod
    def of(cls, row: DrillRun) -> DrillOut:
        return cls(id=row.id, runbook_id=row.runbook_id, runbook_version=row.runbook_version,
                   due_at=row.due_at, trigger=row.trigger, started_by=row.started_by,
                   phase=row.phase, reason=row.reason,
                   execution_id=row.execution_id, started_at=row.started_at,
                   finished_at=row.finished_at, problems=row.problems,
                   verdicts=[VerdictOut(**v) for v in row.verdicts or []])


class DrillsOut(BaseModel):
    runbook_id: str
    schedule: str | None  # `every 7d`, `cron 0 6 * * 1`, or none
    next_due: dt.datetime | None
    items: list[DrillOut]


def _engine(request: Request) -> EngineRuntime:
    return request.app.state.engine


@router.post("/{runbook_id}/drills", response_model=DrillOut, status_code=201,
             responses={404: {}, 422: {}})
async def start(runbook_id: RunbookId, request: Request, session: SessionDep, identity: Responder,
                body: StartDrill | None = None) -> DrillOut:
    """Start a drill of the live runbook now (responder role): its read-only safe steps run,
    every other step is planned; `GET` shows its verdicts once it ends."""
    engine = _engine(request)
    loaded = engine.current(runbook_id)
    given = body.params if body is not None else {}
    try:
        drill_params(loaded.runbook, given)
    except DrillParamsInvalid as exc:
        raise Invalid(str(exc), details=[{"field": "params", "message": str(exc)}]) from None
    row = await start_drill(session, runbook=loaded.runbook, version=loaded.version,
                            due_at=utcnow(), trigger="manual", started_by=identity.name,
                            params=given)
    assert row is not None  # a due time of now, to the microsecond, is this request's own
    after_commit(session, engine.wake)
    return DrillOut.of(row)


@router.get("/{runbook_id}/drills", response_model=DrillsOut, responses={404: {}})
async def list_drills(runbook_id: RunbookId, request: Request, session: SessionDep,
                      _: Viewer) -> DrillsOut:
    """The runbook's latest drills (newest first) with their per-step verdicts, its
    schedule and when the next is due."""
    loaded = _engine(request).current(runbook_id)
    spec = loaded.runbook.drill
    schedule = None if spec is None else (
        f"cron {spec.cron}" if spec.cron else f"every {format_duration(spec.every)}")
    return DrillsOut(runbook_id=runbook_id, schedule=schedule,
                     next_due=next_due(spec, utcnow(), runbook_id) if spec else None,
                     items=[DrillOut.of(r) for r in await latest_drills(session, runbook_id)])


@router.get("/{runbook_id}/drills/{drill_id}", response_model=DrillOut, responses={404: {}})
async def get_drill(runbook_id: RunbookId, drill_id: RowId, session: SessionDep,
                    _: Viewer) -> DrillOut:
    """One drill run."""
    row = await session.get(DrillRun, drill_id)
    if row is None or row.runbook_id != runbook_id:
        raise NotFound(f"no drill {drill_id} of runbook {runbook_id!r}")
    return DrillOut.of(row)
