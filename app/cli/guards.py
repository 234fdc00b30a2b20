"""`runbookd pause`, `resume`, `kill-switch` and `cancel`: a human stops the automation."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.common import TokenOption, cli_actor, identity_of, in_session, in_transaction
from app.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

app = typer.Typer()

RunbookArgument = Annotated[str, typer.Argument(help="The runbook's id.")]
ReasonOption = Annotated[str, typer.Option(help="Why; recorded in the event.")]
# The kill switch's key (app.engine.guards.GLOBAL, not imported: it pulls SQLAlchemy).
GLOBAL_KEY = "global"


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
    _set(_known_key(runbook, verb="pause"), engaged=True, reason=reason)


@app.command()
def resume(runbook: RunbookArgument, reason: ReasonOption = "") -> None:
    """Resume a paused runbook; waiting executions continue."""
    _set(_known_key(runbook, verb="resume"), engaged=False, reason=reason)


@app.command("kill-switch")
def kill_switch(state: Annotated[str | None, typer.Argument(
                    help="on | off; without it, show whether the switch is engaged.")] = None,
                reason: ReasonOption = "") -> None:
    """Stop (on) or release (off) all automation; with no argument, show the switch."""
    if state is None:
        typer.echo(in_session(_describe_kill_switch))
        return
    if state not in ("on", "off"):
        raise typer.BadParameter("say on or off", param_hint="STATE")
    _set(GLOBAL_KEY, engaged=state == "on", reason=reason)


def _known_key(runbook: str, *, verb: str) -> str:
    """The guard key of `runbook`, or exit 1 as the API's 404 does, naming the known ones."""
    known = _catalog_runbooks()
    # A runbook gone from the catalog may still be paused: resuming it must stay possible.
    if runbook in known or (verb == "resume" and in_session(partial(_paused, runbook))):
        return f"runbook:{runbook}"
    typer.secho(f"error (404): no runbook {runbook[:64]!r} in the catalog; known: "
                f"{', '.join(sorted(known)) or 'none'}", err=True, fg="red")
    raise typer.Exit(1)


def _catalog_runbooks() -> set[str]:
    """The ids of the runbooks in RUNBOOKD_REMEDIATIONS_DIR, even if the catalog has errors."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast.
    from app.catalog.lint import analyse
    from app.catalog.parser import catalog_files

    settings = get_settings()
    if not settings.remediations_dir.is_dir():
        return set()
    # Parsed, not validated: pausing must work most when the catalog is broken.
    result = analyse([settings.mappings, *catalog_files(settings.remediations_dir)],
                     actions=None)
    return {parsed.runbook.id for parsed in result.runbooks if parsed.runbook is not None}


async def _paused(runbook: str, session: AsyncSession) -> bool:
    from app.engine.models import Guard

    guard = await session.get(Guard, f"runbook:{runbook}")
    return guard is not None and guard.engaged


async def _describe_kill_switch(session: AsyncSession) -> str:
    """One line: engaged or off, by whom, since when, and why."""
    from app.engine.models import Guard

    guard = await session.get(Guard, GLOBAL_KEY)
    if guard is None:
        return "kill switch: off"
    since = guard.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if guard.engaged:
        return f"kill switch: engaged by {guard.updated_by} since {since}" + (
            f": {guard.reason}" if guard.reason else "")
    return f"kill switch: off (released by {guard.updated_by} at {since})"


def _set(key: str, *, engaged: bool, reason: str) -> None:
    """Engage or release one guard switch, as the local user, and say so."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.engine.guards import set_guard

    in_transaction(partial(set_guard, key=key, engaged=engaged, actor=cli_actor(),
                           reason=reason))
    typer.echo(f"{key}: {'engaged' if engaged else 'released'}")
