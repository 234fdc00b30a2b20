"""Responder feedback: once an execution has ended, the people who took part say whether the
runbook helped (`helped`, `partly`, `did_not_help`) with an optional note.

Who took part: whoever started it (its `started_by`: the identity, or `cli:<user>`, that
started it by hand) and everyone who decided on one of its steps (the approvals table, any
decision, voided or not). Nobody else may give it, admins included: the verdict measures the
runbook as the people who used it saw it, and a verdict on their behalf would skew that.
A second verdict from the same identity updates the row in place (one per execution and
identity, so stats count each person once); every verdict given stays in the events.
Every channel (API, web form, Slack button, CLI) goes through `give_feedback`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.engine import states
from app.engine.feedback_models import NOTE_MAX, VERDICTS, Feedback
from app.engine.models import Approval, Execution
from app.engine.transitions import lock_execution, step_runs_of
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.events import record_event

Channel = Literal["api", "web", "slack", "cli"]


@dataclass(frozen=True, kw_only=True)
class FeedbackGiven:
    """A verdict as a channel received it."""

    execution_id: int
    identity: str
    verdict: str
    note: str = ""
    channel: Channel
    source_addr: str | None = None


async def participants(session: AsyncSession, execution: Execution) -> list[str]:
    """Who took part: the starter first, then the deciders in name order."""
    deciders = (await session.execute(
        select(Approval.identity).where(Approval.execution_id == execution.id).distinct()
    )).scalars()
    starter = [execution.started_by] if execution.started_by else []
    return starter + sorted(set(deciders) - set(starter))


async def feedback_ask(session: AsyncSession, execution: Execution) -> dict[str, bool] | None:
    """What an ended execution's notification adds so that Slack asks for feedback (see
    `slack_messages.build_message`), when people took part; None when nobody did."""
    # A decision is given on a step that waited for one, and such a step keeps its
    # `awaiting_since`: without one (most executions, which an alert started), nobody took
    # part, and the executor's round knows it from the step runs it holds, with no query.
    if not execution.started_by and not any(
            run.awaiting_since is not None for run in await step_runs_of(session, execution.id)):
        return None
    return {"feedback": True} if await participants(session, execution) else None


def slack_of(channels: list[str]) -> list[str]:
    """The Slack channels among a runbook's channels (none named: the default Slack one);
    a success is news there, but never a page."""
    return [c for c in channels if c.startswith("slack:")] if channels else ["slack:default"]


def feedback_blocker(execution: Execution, who_took_part: list[str],
                     identity: str) -> str | None:
    """Why `identity` may not give feedback on this execution now, or None when it may.
    The one rule: `give_feedback` enforces it and the execution page asks it."""
    if execution.status not in states.FINAL_EXECUTION:
        return (f"execution {execution.id} has not ended (it is {execution.status}); feedback "
                "is given once it has succeeded, failed or been rejected, cancelled or expired")
    if identity not in who_took_part:
        named = ", ".join(who_took_part) or "nobody: it ran with no human"
        return (f"only the people who took part in execution {execution.id} may give "
                f"feedback (whoever started it and the approvers of its steps): {named}")
    return None


def check_verdict(verdict: str, note: str) -> None:
    """Invalid (422) for a verdict outside the three or a note over the bound."""
    if verdict not in VERDICTS:
        raise Invalid(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict[:40]!r}",
                      details=[{"field": "verdict", "message": f"one of {', '.join(VERDICTS)}"}])
    if len(note) > NOTE_MAX:
        raise Invalid(f"the note is {len(note)} characters; at most {NOTE_MAX}",
                      details=[{"field": "note", "message": f"at most {NOTE_MAX} characters"}])


async def give_feedback(session: AsyncSession, given: FeedbackGiven) -> tuple[Feedback, bool]:
    """Record (or update) one person's verdict; returns the row and whether it was new.

    The execution is locked so that two verdicts of one person never race to insert."""
    check_verdict(given.verdict, given.note)
    execution = await lock_execution(session, given.execution_id)
    blocker = feedback_blocker(execution, await participants(session, execution),
                               given.identity)
    if blocker is not None:
        if execution.status not in states.FINAL_EXECUTION:
            raise Conflict(blocker, current_state=execution.status)
        raise Forbidden(blocker)
    now = utcnow()
    row = (await session.execute(select(Feedback).where(
        Feedback.execution_id == execution.id, Feedback.identity == given.identity)
    )).scalar_one_or_none()
    before = row.verdict if row is not None else None
    if row is None:
        row = Feedback(execution_id=execution.id, runbook_id=execution.runbook_id,
                       execution_created_at=execution.created_at, identity=given.identity,
                       created_at=now)
        session.add(row)
    row.verdict, row.note, row.channel, row.updated_at = (
        given.verdict, given.note, given.channel, now)
    record_event(session, kind="feedback.given", entity="execution", actor=given.identity,
                 execution_id=execution.id, source_addr=given.source_addr,
                 # The timeline shows the reason: the verdict first, then the note.
                 reason=f"{given.verdict}: {given.note}" if given.note else given.verdict,
                 data={"verdict": given.verdict, "channel": given.channel,
                       **({"replaces": before} if before else {})})
    await session.flush()
    return row, before is None


async def feedback_of(session: AsyncSession, execution_id: int) -> list[Feedback]:
    """Every verdict on an execution, oldest first; NotFound for an unknown execution."""
    if await session.get(Execution, execution_id) is None:
        raise NotFound(f"execution {execution_id} does not exist")
    return list((await session.execute(
        select(Feedback).where(Feedback.execution_id == execution_id)
        .order_by(Feedback.created_at, Feedback.id))).scalars())
