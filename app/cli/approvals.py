"""`runbookd approve`, `runbookd reject` and `runbookd rollback`: decisions on risky steps,
and a step's rollback started by hand, from a terminal.

Decisions go through the engine's one approval path (`decide`), so the rules are the API's.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.common import TokenOption, identity_of, in_session, in_transaction
from app.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.engine.approvals import Decision
    from app.engine.models import Execution
    from app.identity import Identity

app = typer.Typer()

ExecutionId = Annotated[int, typer.Argument(help="The execution's id, as `history` lists it.")]
StepId = Annotated[str, typer.Argument(
    help="The id of the step that awaits approval (`STEP.rollback` for its rollback).")]
CommentOption = Annotated[str, typer.Option(help="Why; recorded with the decision.")]
PlanHashOption = Annotated[str | None, typer.Option(
    "--plan-hash", help="The plan hash you reviewed (`runbookd show ID` prints it); a step "
                        "whose plan changed since is refused, showing the new plan.")]
YesOption = Annotated[bool, typer.Option(
    "--yes", help="Approve the plan printed now without asking (for scripts).")]


@app.command()
def approve(execution_id: ExecutionId, step_id: StepId, comment: CommentOption = "",
            plan_hash: PlanHashOption = None, yes: YesOption = False,
            token: TokenOption = None) -> None:
    """Approve a risky step's plan (the running service picks it up within a poll).

    Without --plan-hash, the plan is printed and you confirm it; the approval is bound to
    the plan you saw either way."""
    identity = identity_of(get_settings(), token)
    seen = plan_hash or _show_plan(execution_id, step_id)
    if plan_hash is None and not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter("not a terminal: pass --plan-hash (from `runbookd show`) "
                                     "or --yes to approve the plan printed above")
        typer.confirm("Approve this plan?", abort=True)
    _decide(execution_id, step_id, "approve", comment=comment, identity=identity, seen=seen)


@app.command()
def reject(execution_id: ExecutionId, step_id: StepId, comment: CommentOption = "",
           plan_hash: PlanHashOption = None, token: TokenOption = None) -> None:
    """Reject a risky step; the execution ends as rejected."""
    identity = identity_of(get_settings(), token)
    seen = plan_hash or _show_plan(execution_id, step_id)
    _decide(execution_id, step_id, "reject", comment=comment, identity=identity, seen=seen)


def _show_plan(execution_id: int, step_id: str) -> str:
    """Print the step's plan and return the hash it is bound to."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.engine.approvals import find_step_run

    step = in_session(partial(find_step_run, execution_id=execution_id, step_id=step_id))
    summary = (step.plan or {}).get("summary") or "(no plan recorded)"
    typer.echo(f"plan: {summary}\nplan hash: {step.step_hash}")
    if not step.step_hash:
        raise typer.BadParameter(f"step {step_id} of execution {execution_id} has no plan to "
                                 "approve yet")
    return step.step_hash


def _decide(execution_id: int, step_id: str, decision: Decision, *, comment: str,
            identity: Identity, seen: str) -> None:
    """Record the decision in one transaction and print the outcome as JSON."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.engine.approvals import DecisionRequest, decide
    from app.engine.runbooks import RunbookVersions

    request = DecisionRequest(
        execution_id=execution_id, step_id=step_id, identity=identity, decision=decision,
        channel="cli", comment=comment, seen_hash=seen)
    # The CLI has no live catalog: the execution's runbook version comes from the database.
    outcome = in_transaction(partial(decide, request=request,
                                     runbooks=RunbookVersions(lambda: None)))
    typer.echo(json.dumps(outcome.as_dict()))


@app.command()
def rollback(
    execution_id: ExecutionId,
    step_id: Annotated[str, typer.Argument(help="The step whose declared rollback to run.")],
    reason: Annotated[str, typer.Option(help="Why; recorded with the new execution.")] = "",
    token: TokenOption = None,
) -> None:
    """Start a step's rollback by hand: a new execution linked to this one. The rollback of
    a risky step then waits for the step's approvers (`runbookd approve NEW STEP.rollback`)."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.engine.executions import start_rollback
    from app.engine.runbooks import RunbookVersions
    from app.engine.schemas import ExecutionOut
    from app.errors import Forbidden

    identity = identity_of(get_settings(), token)

    async def start(session: AsyncSession) -> Execution:
        if not identity.has_role("responder"):  # the API's rule, reported the API's way
            raise Forbidden(f"identity {identity.name!r} may not start a rollback: it needs "
                            "the responder role or higher")
        return await start_rollback(session, execution_id, step_id,
                                    runbook_of=RunbookVersions(lambda: None),
                                    actor=identity.name, reason=reason)

    typer.echo(ExecutionOut.of(in_transaction(start)).model_dump_json())
