"""`runbookd pause`, `resume`, `kill-switch` and `cancel`: a human stops the automation."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from app.cli.common import TokenOption, cli_actor, identity_of, in_transaction
from app.config import get_settings

app = typer.Typer()

RunbookArgument = Annotated[str, typer.Argument(help="The runbook's id.")]
ReasonOption = Annotated[str, typer.Option(help="Why; recorded in the event.")]


@app.command()
def cancel(
    execution_id: Annotated[int, typer.Argument(
        help="The execution's id, as `history` lists it.")],
    reason: Annotated[str, typer.Option(
        help="Why; recorded in the event (default: cancelled by the actor).")] = "",
    token: TokenOption = None,
) -> None:
    """Cancel an active execution."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.engine.executions import cancel_execution

    actor = identity_of(get_settings(), token).name if token else cli_actor()
    execution = in_transaction(partial(cancel_execution, execution_id=execution_id, actor=actor,
                                       reason=reason or f"cancelled by {actor}"))
    typer.echo(execution.status)


@app.command()
def pause(runbook: RunbookArgument, reason: ReasonOption = "") -> None:
    """Pause a runbook: its executions wait (they are never dropped)."""
    _set(f"runbook:{runbook}", engaged=True, reason=reason)


@app.command()
def resume(runbook: RunbookArgument, reason: ReasonOption = "") -> None:
    """Resume a paused runbook; waiting executions continue."""
    _set(f"runbook:{runbook}", engaged=False, reason=reason)


@app.command("kill-switch")
def kill_switch(state: Annotated[str, typer.Argument(help="on | off")],
                reason: ReasonOption = "") -> None:
    """Stop (on) or release (off) all automation."""
    if state not in ("on", "off"):
        raise typer.BadParameter("say on or off")
    _set("global", engaged=state == "on", reason=reason)


def _set(key: str, *, engaged: bool, reason: str) -> None:
    """Engage or release one guard switch, as the local user, and say so."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.engine.guards import set_guard

    in_transaction(partial(set_guard, key=key, engaged=engaged, actor=cli_actor(),
                           reason=reason))
    typer.echo(f"{key}: {'engaged' if engaged else 'released'}")
