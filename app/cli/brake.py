"""`runbookd brake [status|release|abort]`: a human decides what a storm brake held."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.common import TokenOption, cli_actor, identity_of, in_session, in_transaction
from app.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

app = typer.Typer()
brake_app = typer.Typer(help="Storm brakes: what they hold, and a human's release or abort.",
                        no_args_is_help=True)
app.add_typer(brake_app, name="brake")

RunbookOption = Annotated[str | None, typer.Option(
    help="The runbook whose own brake this is (default: the global brake).")]
WhyOption = Annotated[str, typer.Option(help="Why; recorded in the event (required).")]


@brake_app.command()
def status() -> None:
    """Show every storm brake that ever engaged, and the executions each one holds."""
    typer.echo(in_session(_describe))


@brake_app.command()
def release(reason: WhyOption, runbook: RunbookOption = None,
            token: TokenOption = None) -> None:
    """Release an engaged brake: the executions it held start."""
    _decide(runbook, abort=False, reason=reason, token=token)


@brake_app.command()
def abort(reason: WhyOption, runbook: RunbookOption = None, token: TokenOption = None) -> None:
    """Abort what an engaged brake held: those executions are cancelled; the brake releases."""
    _decide(runbook, abort=True, reason=reason, token=token)


def _decide(runbook: str | None, *, abort: bool, reason: str, token: str | None) -> None:
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.engine.brakes import GLOBAL_SCOPE, release_brake, runbook_scope
    from app.errors import RunbookdError

    scope = runbook_scope(runbook) if runbook else GLOBAL_SCOPE
    actor = identity_of(get_settings(), token).name if token else cli_actor()
    try:
        outcome = in_transaction(partial(release_brake, scope=scope, abort=abort, actor=actor,
                                         reason=reason))
    except RunbookdError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None
    done = "aborted (cancelled)" if abort else "released"
    ids = ", ".join(str(i) for i in outcome.execution_ids) or "none"
    typer.echo(f"{scope}: {done}; executions: {ids}")


async def _describe(session: AsyncSession) -> str:
    from app.engine.brakes import list_brakes

    brakes = await list_brakes(session)
    if not brakes:
        return "no storm brake has engaged"
    lines = []
    for brake in brakes:
        when = brake.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        state = "ENGAGED" if brake.engaged else f"released by {brake.updated_by} at {when}"
        lines.append(f"{brake.scope}: {state} ({brake.limit_targets} targets within "
                     f"{brake.within_seconds}s); targets: {', '.join(brake.targets)}")
        lines += [f"  held: execution {h.execution_id} {h.runbook_id} {h.target} ({h.status})"
                  for h in brake.held]
    return "\n".join(lines)
