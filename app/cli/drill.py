"""`runbookd drill RUNBOOK`: start a drill now and print what it found, step by step.

The drill runs in the service: this command stores the drill run and its execution (on the
runbook version the service loaded last), and a running runbookd's worker drives it within a
poll. It waits for the end (`--timeout`) and exits 1 when the drill found a problem or did not
end in time, so a script can act on it.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.common import TokenOption, cli_actor, identity_of, in_transaction, key_values, run
from app.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.engine.drills_models import DrillRun

app = typer.Typer()

ParamOption = Annotated[list[str] | None, typer.Option(
    "--param", "-p", help="A param of the drill as NAME=VALUE (repeat it); none: the "
                          "runbook's `drill.params`.")]
TimeoutOption = Annotated[float, typer.Option(
    help="How long to wait for the drill to end, in seconds.", min=0)]


@app.command()
def drill(runbook: Annotated[str, typer.Argument(help="The runbook's id.")],
          param: ParamOption = None, timeout: TimeoutOption = 300.0,
          token: TokenOption = None) -> None:
    """Drill a runbook now: its read-only safe steps run, the others are only planned."""
    params = key_values(param or [], "--param")
    actor = identity_of(get_settings(), token).name if token else cli_actor()
    drill_id, execution_id = in_transaction(partial(_start, runbook_id=runbook,
                                                    params=params, actor=actor))
    typer.echo(f"drill {drill_id} of {runbook} started as execution {execution_id}; "
               f"waiting up to {timeout:g}s for it to end")
    row = run(partial(_wait, drill_id, timeout))
    typer.echo(describe(row))
    if row.phase == "running":
        typer.secho(f"the drill did not end within {timeout:g}s: is a runbookd worker running "
                    "against this database?", err=True, fg="red")
        raise typer.Exit(1)
    if row.problems:
        raise typer.Exit(1)


def describe(row: DrillRun) -> str:
    """The drill's headline, then one line per verdict."""
    from app.engine.drills_verdicts import headline

    lines = [f"drill {row.id} of {row.runbook_id} (version {row.runbook_version[:12]}): "
             f"{row.phase}" + (f", {headline(row.problems)}" if row.phase != "running"
                                else "") + (f" ({row.reason})"
                                            if row.phase == "skipped" else "")]
    for verdict in row.verdicts or []:
        mark = "ok     " if verdict["ok"] else "PROBLEM"
        lines.append(f"  {mark} {verdict['step']} [{verdict['kind']}] {verdict['action']}: "
                     f"{verdict['reason']}")
    return "\n".join(lines)


async def _start(session: AsyncSession, *, runbook_id: str, params: dict[str, str],
                 actor: str) -> tuple[int, int | None]:
    from sqlalchemy import select

    from app.catalog.models import RunbookVersion
    from app.catalog.schema import Runbook
    from app.db import utcnow
    from app.engine.drills_service import DrillParamsInvalid, drill_params, start_drill
    from app.errors import Invalid, NotFound

    stored = (await session.execute(
        select(RunbookVersion).where(RunbookVersion.runbook_id == runbook_id)
        .order_by(RunbookVersion.loaded_at.desc()).limit(1))).scalar_one_or_none()
    if stored is None:
        raise NotFound(f"no runbook {runbook_id!r} was ever loaded by a runbookd on this "
                       "database (`runbookd runbooks` lists the catalog)")
    runbook = Runbook.model_validate(stored.content)
    try:
        drill_params(runbook, params)
    except DrillParamsInvalid as exc:
        raise Invalid(str(exc)) from None
    row = await start_drill(session, runbook=runbook, version=stored.version, due_at=utcnow(),
                            trigger="manual", started_by=actor, params=params)
    assert row is not None  # a due time of now, to the microsecond, is ours
    return row.id, row.execution_id


async def _wait(drill_id: int, timeout: float,
                factory: async_sessionmaker[AsyncSession]) -> DrillRun:
    from app.engine.drills_models import RUNNING, DrillRun

    deadline = time.monotonic() + timeout
    while True:
        async with factory() as session:
            row = await session.get(DrillRun, drill_id)
            assert row is not None
            if row.phase != RUNNING or time.monotonic() >= deadline:
                session.expunge(row)
                return row
        await asyncio.sleep(0.25)
