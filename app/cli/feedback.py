"""`runbookd feedback EXECUTION helped|partly|did-not-help [--note ...]`: say whether the
runbook helped, as one who took part in the execution."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from app.cli.common import TokenOption, cli_actor, identity_of, in_transaction
from app.config import get_settings

app = typer.Typer()

# The command line's spelling (a dash), and the API's (an underscore), both accepted.
VERDICTS = {"helped": "helped", "partly": "partly", "did-not-help": "did_not_help",
            "did_not_help": "did_not_help"}


def _verdict(value: str) -> str:
    if value not in VERDICTS:
        raise typer.BadParameter(f"{value[:40]!r}: use helped, partly or did-not-help")
    return VERDICTS[value]


@app.command()
def feedback(
    execution: Annotated[int, typer.Argument(min=1, help="The execution's id.")],
    verdict: Annotated[str, typer.Argument(
        help="helped, partly or did-not-help", metavar="helped|partly|did-not-help")],
    note: Annotated[str, typer.Option(help="What helped or did not (at most 1000 "
                                           "characters).")] = "",
    token: TokenOption = None,
) -> None:
    """Record whether the runbook helped, once the execution has ended (only those who took
    part: whoever started it and its approvers). Again replaces your earlier verdict."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.engine.feedback import FeedbackGiven, give_feedback

    chosen = _verdict(verdict)
    who = identity_of(get_settings(), token).name if token else cli_actor()
    row, created = in_transaction(partial(give_feedback, given=FeedbackGiven(
        execution_id=execution, identity=who, verdict=chosen, note=note, channel="cli")))
    typer.echo(f"execution {execution}: {who} says {row.verdict} "
               f"({'recorded' if created else 'replaced your earlier verdict'})")
