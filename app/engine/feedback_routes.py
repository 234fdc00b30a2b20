"""Responder feedback over HTTP: give it on an ended execution, or read what was given."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from app.db import SessionDep
from app.engine.feedback import FeedbackGiven, feedback_of, give_feedback
from app.engine.feedback_models import NOTE_MAX, Feedback
from app.identity import Identity
from app.identity.deps import require
from app.paging import RowId

router = APIRouter(prefix="/api/v1/executions", tags=["feedback"])
Viewer = Annotated[Identity, Depends(require("viewer"))]


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["helped", "partly", "did_not_help"]
    note: str = Field(default="", max_length=NOTE_MAX)


class FeedbackOut(BaseModel):
    execution_id: int
    identity: str
    verdict: str
    note: str
    channel: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, row: Feedback) -> FeedbackOut:
        return cls(execution_id=row.execution_id, identity=row.identity, verdict=row.verdict,
                   note=row.note, channel=row.channel, created_at=row.created_at,
                   updated_at=row.updated_at)


class FeedbackList(BaseModel):
    items: list[FeedbackOut]


@router.post("/{execution_id}/feedback", response_model=FeedbackOut,
             responses={201: {"model": FeedbackOut}, 403: {}, 404: {}, 409: {}})
async def post_feedback(execution_id: RowId, body: FeedbackBody, request: Request,
                        response: Response, session: SessionDep,
                        identity: Viewer) -> FeedbackOut:
    """Say whether the runbook helped: only those who took part, once it has ended. A second
    verdict from the same identity replaces the first (200; the first is 201)."""
    row, created = await give_feedback(session, FeedbackGiven(
        execution_id=execution_id, identity=identity.name, verdict=body.verdict,
        note=body.note, channel="api",
        source_addr=request.client.host if request.client else None))
    response.status_code = 201 if created else 200
    return FeedbackOut.of(row)


@router.get("/{execution_id}/feedback", response_model=FeedbackList, responses={404: {}})
async def get_feedback(execution_id: RowId, session: SessionDep, _: Viewer) -> FeedbackList:
    """Every verdict given on an execution, oldest first."""
    return FeedbackList(items=[FeedbackOut.of(r) for r in await feedback_of(session,
                                                                            execution_id)])
