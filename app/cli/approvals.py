"""`runbookd approve` and `runbookd reject`: a decision on a risky step, from a terminal.

Both go through the engine's one approval path (`decide`), so the rules are the API's.
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.common import TokenOption, identity_of, in_transaction
from app.config import get_settings

if TYPE_CHECKING:
    from app.engine.approvals import Decision

app = typer.Typer()

ExecutionId = Annotated[int, typer.Argument(help="The execution's id, as `history` lists it.")]
StepId = Annotated[str, typer.Argument(help="The id of the step that awaits approval.")]
CommentOption = Annotated[str, typer.Option(help="Why; recorded with the decision.")]


@app.command()
def approve(execution_id: ExecutionId, step_id: StepId, comment: CommentOption = "",
            token: TokenOption = None) -> None:
    """Approve a risky step (the running service picks it up within a poll)."""
    _decide(execution_id, step_id, "approve", comment=comment, token=token)


@app.command()
def reject(execution_id: ExecutionId, step_id: StepId, comment: CommentOption = "",
           token: TokenOption = None) -> None:
    """Reject a risky step; the execution ends as rejected."""
    _decide(execution_id, step_id, "reject", comment=comment, token=token)


def _decide(execution_id: int, step_id: str, decision: Decision, *, comment: str,
            token: str | None) -> None:
    """Record the decision in one transaction and print the outcome as JSON."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.engine.approvals import DecisionRequest, decide
    from app.engine.runbooks import RunbookVersions

    request = DecisionRequest(
        execution_id=execution_id, step_id=step_id, identity=identity_of(get_settings(), token),
        decision=decision, channel="cli", comment=comment)
    # The CLI has no live catalog: the execution's runbook version comes from the database.
    outcome = in_transaction(partial(decide, request=request,
                                     runbooks=RunbookVersions(lambda: None)))
    typer.echo(json.dumps(outcome.as_dict()))
