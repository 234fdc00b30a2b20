"""Responder feedback on the pages: the execution page's form (three buttons and a note, for
those who took part, once it has ended) and what the runbook page shows of the notes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.engine.feedback import (
    FeedbackGiven,
    feedback_blocker,
    give_feedback,
    participants,
)
from app.engine.feedback_models import NOTE_MAX, Feedback
from app.engine.models import Execution
from app.history.feedback import VERDICT_WORDS, Note, recent_notes, verdicts_of
from app.identity import Identity
from app.paging import RowId
from app.web.pages import HtmlRoute, client_addr, redirect, require_identity, transaction
from app.web.session import verify_csrf

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)


@dataclass(frozen=True)
class FeedbackPanel:
    """What the execution page shows: every verdict, the viewer's own, and whether (or why
    not) the viewer may give one."""

    given: list[Feedback]
    mine: Feedback | None
    can_give: bool
    why_not: str
    words: dict[str, str]
    note_max: int = NOTE_MAX


async def feedback_panel(session: AsyncSession, execution_id: int,
                         me: Identity) -> FeedbackPanel:
    """The execution page's feedback section for `me` (the rule is the engine's)."""
    execution = await session.get(Execution, execution_id)
    given = await verdicts_of(session, execution_id)
    why = (feedback_blocker(execution, await participants(session, execution), me.name)
           if execution is not None else "no such execution")
    return FeedbackPanel(given=given, mine=next((f for f in given if f.identity == me.name),
                                                None),
                         can_give=why is None, why_not=why or "", words=VERDICT_WORDS)


async def runbook_notes(session: AsyncSession, runbook_id: str) -> list[Note]:
    """The last five notes on the runbook's executions, for its page."""
    return await recent_notes(session, runbook_id, limit=5)


@router.post("/executions/{execution_id}/feedback")
async def feedback_on_page(
    execution_id: RowId, request: Request,
    verdict: Annotated[Literal["helped", "partly", "did_not_help"], Form()],
    note: Annotated[str, Form(max_length=NOTE_MAX)] = "", csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Give (or replace) the signed-in identity's verdict from the execution page."""
    me = require_identity(request)
    verify_csrf(request, csrf_token)
    async with transaction(request) as session:
        await give_feedback(session, FeedbackGiven(
            execution_id=execution_id, identity=me.name, verdict=verdict, note=note.strip(),
            channel="web", source_addr=client_addr(request)))
    return redirect(f"/executions/{execution_id}#feedback")
