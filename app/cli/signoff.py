"""`runbookd signoff RUNBOOK --version HASH`: a reviewer signs off a runbook version."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.common import TokenOption, identity_of, in_transaction
from app.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.identity import Identity

app = typer.Typer()


@app.command()
def signoff(
    runbook: Annotated[str, typer.Argument(help="The runbook id.")],
    version: Annotated[str, typer.Option(
        help="The version's sha256, or a unique prefix of at least 8 hex digits.")],
    comment: Annotated[str, typer.Option(help="What was reviewed; recorded with it.")] = "",
    token: TokenOption = None,
) -> None:
    """Sign off a runbook version: its changed risky steps stop running as drills.

    The reviewer (the identity of --token) is in the runbook's `reviewers` or an admin, and
    did not load that version."""
    identity = identity_of(get_settings(), token)
    row = in_transaction(partial(_sign, runbook=runbook, version=version, comment=comment,
                                 identity=identity))
    typer.echo(f"{runbook}: version {row[0][:12]} signed off by {row[1]} at {row[2]}")


async def _sign(session: AsyncSession, *, runbook: str, version: str, comment: str,
                identity: Identity) -> tuple[str, str, str]:
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.catalog.signoffs import sign_off

    row = await sign_off(session, runbook_id=runbook, version=version, identity=identity,
                         comment=comment)
    return row.version, row.reviewer, row.signed_at.isoformat(timespec="seconds")
