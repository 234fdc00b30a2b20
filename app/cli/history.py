"""`runbookd history`, `show` and `postmortem`: the record, read from the database."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from app.cli.common import in_session

app = typer.Typer()

ExecutionId = Annotated[int, typer.Argument(help="The execution's id, as `history` lists it.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


@app.command()
def history(
    runbook: Annotated[str | None, typer.Option(
        help="Only executions of this runbook (its id).")] = None,
    status: Annotated[str | None, typer.Option(
        help="Only executions in this state, e.g. failed or awaiting_approval.")] = None,
    target: Annotated[str | None, typer.Option(
        help="Only executions on this target, e.g. model=fraud-v3.")] = None,
    alertname: Annotated[str | None, typer.Option(
        help="Only executions for an alert with this alertname.")] = None,
    actor: Annotated[str | None, typer.Option(
        help="Only executions this identity approved, rejected or started.")] = None,
    drill: Annotated[bool | None, typer.Option(
        help="Only drills (--drill) or only real runs (--no-drill).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many executions.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Executions, newest first."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.history.queries import ExecutionFilter, list_executions

    flt = ExecutionFilter(runbook=runbook, status=status, target=target,
                          alertname=alertname, actor=actor, drill=drill)
    page = in_session(partial(list_executions, flt=flt, limit=limit))
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
        return
    typer.echo(f"{'ID':>6}  {'CREATED':<20} {'RUNBOOK':<28} {'STATUS':<18} TARGET")
    for e in page.items:
        drill_mark = " (drill)" if e.dry_run else ""
        typer.echo(f"{e.id:>6}  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.runbook_id[:28]:<28} "
                   f"{e.status:<18} {e.target}{drill_mark}")


@app.command()
def show(execution_id: ExecutionId, as_json: JsonOption = False) -> None:
    """One execution in full: steps, approvals and timeline."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.history.queries import execution_detail

    detail = in_session(partial(execution_detail, execution_id=execution_id))
    if as_json:
        typer.echo(detail.model_dump_json(indent=2))
        return
    typer.echo(f"execution {detail.id}: {detail.runbook_id} on {detail.target} — "
               f"{detail.status}" + (f" ({detail.status_reason})" if detail.status_reason
                                     else ""))
    for s in detail.steps:
        typer.echo(f"  {s.kind}:{s.step_id:<24} {s.status:<18} {s.summary or s.error or ''}")
        if s.plan:
            # What an approver approves: the concrete change, and the hash it is bound to.
            typer.echo(f"    plan: {s.plan.get('summary', '')}  (plan hash {s.step_hash})")
    for a in detail.approvals:
        typer.echo(f"  {a.decision} by {a.identity} via {a.channel} at {a.created_at:%H:%M:%S}")
    for ev in detail.timeline:
        typer.echo(f"  {ev.created_at:%H:%M:%S} {ev.actor}: {ev.kind} {ev.to_state or ''} "
                   f"{ev.reason}")


@app.command()
def postmortem(execution_id: ExecutionId) -> None:
    """Print a Markdown postmortem draft."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.history.postmortem import postmortem_markdown

    typer.echo(in_session(partial(postmortem_markdown, execution_id=execution_id)))
