"""Responder feedback as the read side shows it: helpfulness per runbook for the stats, the
recent notes for the runbook page, every verdict for the postmortem draft.

Each is one query over the feedback table alone (a verdict carries its execution's runbook
and created_at): never a bind parameter per execution, and no walk over the executions of
the window, so the stats' part stays small at a million executions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.engine.feedback_models import DID_NOT_HELP, HELPED, PARTLY, Feedback


class Helpfulness(BaseModel):
    """Verdicts on a runbook's executions in the window: one per person and execution."""

    helped: int = 0
    partly: int = 0
    did_not_help: int = 0
    given: int = 0  # verdicts in all
    executions: int = 0  # distinct executions with at least one verdict
    # Partly counts half: (helped + partly / 2) / given.
    helped_ratio: float | None = None


async def helpfulness_by_runbook(session: AsyncSession, *, since: dt.datetime,
                                 until: dt.datetime, runbook: str | None = None,
                                 ) -> dict[str, Helpfulness]:
    """Helpfulness per runbook over executions created in [since, until), the stats' window:
    one aggregate query over feedback, grouped by runbook."""
    window = [Feedback.execution_created_at >= since, Feedback.execution_created_at < until]
    if runbook:
        window.append(Feedback.runbook_id == runbook)

    def counted(verdict: str):  # type: ignore[no-untyped-def]
        return func.sum(case((Feedback.verdict == verdict, 1), else_=0))

    rows = (await session.execute(
        select(Feedback.runbook_id, counted(HELPED), counted(PARTLY), counted(DID_NOT_HELP),
               func.count(), func.count(func.distinct(Feedback.execution_id)))
        .where(*window).group_by(Feedback.runbook_id).order_by(Feedback.runbook_id)
    )).all()
    return {rid: Helpfulness(helped=helped, partly=partly, did_not_help=not_helped,
                             given=given, executions=executions,
                             helped_ratio=(helped + partly / 2) / given)
            for rid, helped, partly, not_helped, given, executions in rows}


@dataclass(frozen=True)
class Note:
    execution_id: int
    identity: str
    verdict: str
    note: str
    at: dt.datetime


async def recent_notes(session: AsyncSession, runbook_id: str, *, limit: int = 5) -> list[Note]:
    """The newest notes people left on a runbook's executions (verdicts without a note are
    counted in the stats, not shown here)."""
    rows = (await session.execute(
        select(Feedback.execution_id, Feedback.identity, Feedback.verdict, Feedback.note,
               Feedback.updated_at)
        .where(Feedback.runbook_id == runbook_id, Feedback.note != "")
        .order_by(Feedback.updated_at.desc(), Feedback.id.desc()).limit(limit)
    )).all()
    return [Note(*row) for row in rows]


async def verdicts_of(session: AsyncSession, execution_id: int) -> list[Feedback]:
    """Every verdict on one execution, oldest first."""
    return list((await session.execute(
        select(Feedback).where(Feedback.execution_id == execution_id)
        .order_by(Feedback.created_at, Feedback.id))).scalars())


VERDICT_WORDS = {HELPED: "helped", PARTLY: "partly", DID_NOT_HELP: "did not help"}
