"""Change sign-off over HTTP: a runbook's sign-offs and review state, and signing one off.

Thin: look up, call `app.catalog.signoffs`, return. Who may sign off is the service's rule.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from app.catalog.signoff_models import RunbookSignoff
from app.catalog.signoff_reviews import review_of
from app.catalog.signoffs import list_signoffs, pending_for, sign_off
from app.db import SessionDep
from app.errors import NotFound
from app.identity import Identity
from app.identity.deps import require

router = APIRouter(tags=["catalog"])
Viewer = Annotated[Identity, Depends(require("viewer"))]
RunbookId = Annotated[str, Path(min_length=1, max_length=64)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no or wrong token"}, 404: {"description": "no such runbook"},
}


class SignoffIn(BaseModel):
    version: str = Field(min_length=1, max_length=64,
                         description="the version's sha256, or a unique prefix of 8+ digits")
    comment: str = Field(default="", max_length=2000)


class SignoffOut(BaseModel):
    runbook_id: str
    version: str
    reviewer: str
    kind: str
    signed_at: dt.datetime
    comment: str

    @classmethod
    def of(cls, row: RunbookSignoff) -> SignoffOut:
        return cls(runbook_id=row.runbook_id, version=row.version, reviewer=row.reviewer,
                   kind=row.kind, signed_at=row.signed_at, comment=row.comment)


class ReviewOut(BaseModel):
    reviewed_at: dt.datetime
    source: str  # signoff | yaml
    due_at: dt.datetime
    overdue: bool


class PendingOut(BaseModel):
    version: str
    loaded_at: dt.datetime
    loaded_by: str | None
    against: str | None
    changes: list[str]


class SignoffsOut(BaseModel):
    runbook_id: str
    live_version: str
    pending: PendingOut | None = Field(
        description="the live version when it waits for a sign-off (it runs as a drill)")
    review: ReviewOut
    signoffs: list[SignoffOut]


def _live(request: Request, runbook_id: str) -> Any:
    loaded = request.app.state.catalog.catalog.runbooks.get(runbook_id)
    if loaded is None:
        raise NotFound(f"no runbook {runbook_id[:64]!r} in the catalog")
    return loaded


@router.get("/api/v1/runbooks/{runbook_id}/signoffs", response_model=SignoffsOut,
            responses=ERRORS)
async def get_signoffs(request: Request, runbook_id: RunbookId, session: SessionDep,
                       _: Viewer) -> SignoffsOut:
    """Every sign-off of a runbook (newest first), whether its live version waits for one,
    and its review cadence from those records."""
    loaded = _live(request, runbook_id)
    pending = await pending_for(session, runbook_id, loaded.version)
    review = await review_of(session, loaded.runbook)
    return SignoffsOut(
        runbook_id=runbook_id, live_version=loaded.version,
        pending=PendingOut(version=pending.version, loaded_at=pending.loaded_at,
                           loaded_by=pending.loaded_by,
                           against=pending.base.version if pending.base else None,
                           changes=[c.describe() for c in pending.changes])
        if pending else None,
        review=ReviewOut(reviewed_at=review.reviewed_at, source=review.source,
                         due_at=review.due_at, overdue=review.overdue),
        signoffs=[SignoffOut.of(r) for r in await list_signoffs(session, runbook_id)])


@router.post("/api/v1/runbooks/{runbook_id}/signoffs", response_model=SignoffOut,
             status_code=201, responses={
                 **ERRORS, 403: {"description": "not a reviewer, or the identity that "
                                                "loaded this version"},
                 409: {"description": "already signed off"},
                 422: {"description": "no such version of this runbook"}})
async def post_signoff(request: Request, runbook_id: RunbookId, body: SignoffIn,
                       session: SessionDep, identity: Viewer) -> SignoffOut:
    """Sign off a version of a runbook: its risky changes stop running as drills."""
    _live(request, runbook_id)
    row = await sign_off(session, runbook_id=runbook_id, version=body.version,
                         identity=identity, comment=body.comment,
                         source_addr=request.client.host if request.client else None)
    return SignoffOut.of(row)
