"""CLI commands that act on the database directly: history, approvals, guards, the worker.

They use the same services as the API, so the rules (roles, quorum, separation of duties,
the transition table, events with an actor) are the same from a terminal.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from app.config import Settings, get_settings

if TYPE_CHECKING:
    from app.identity import Identity

# The heavy imports (SQLAlchemy, FastAPI) happen inside the commands, so that `runbookd lint`
# stays fast enough for a pre-commit hook.
T = TypeVar("T")


def _run(work: Callable[[Settings, Any], Awaitable[T]]) -> T:
    """Run `work(settings, session_factory)` on a fresh engine; errors exit non-zero."""
    from app.db import make_engine, make_session_factory
    from app.errors import RunbookdError

    settings = get_settings()

    async def main() -> T:
        engine = make_engine(settings.database_url, pool_size=2)
        try:
            return await work(settings, make_session_factory(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except RunbookdError as exc:
        typer.secho(f"error ({exc.status_code}): {exc.message}", err=True, fg="red")
        raise typer.Exit(1) from None


def _identity(settings: Settings, token: str | None) -> Identity:
    """The identity behind --token (or RUNBOOKD_TOKEN), from the tokens file."""
    from app.identity import IdentityStore

    if not token:
        raise typer.BadParameter("pass --token or set RUNBOOKD_TOKEN: approvals need an identity")
    store = IdentityStore(
        settings.api_tokens_file,
        dev_token=settings.dev_token.get_secret_value() if settings.dev_token else None)
    identity = store.lookup(token)
    if identity is None:
        raise typer.BadParameter("the token matches no identity in RUNBOOKD_API_TOKENS_FILE")
    return identity


def _cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


Token = Annotated[str | None, typer.Option("--token", envvar="RUNBOOKD_TOKEN",
                                           help="API token of the identity acting.")]


def register(app: typer.Typer) -> None:
    """Add the history, approval, guard and worker commands to the `runbookd` CLI."""

    @app.command()
    def history(
        runbook: str | None = None, status: str | None = None, target: str | None = None,
        alertname: str | None = None, actor: str | None = None, drill: bool | None = None,
        limit: int = 20, as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Executions, newest first."""
        from app.history.queries import ExecutionFilter, list_executions

        flt = ExecutionFilter(runbook=runbook, status=status, target=target,
                              alertname=alertname, actor=actor, drill=drill)

        async def work(_: Settings, factory: Any) -> Any:
            async with factory() as session:
                return await list_executions(session, flt, limit=limit)

        page = _run(work)
        if as_json:
            typer.echo(page.model_dump_json(indent=2))
            return
        typer.echo(f"{'ID':>6}  {'CREATED':<20} {'RUNBOOK':<28} {'STATUS':<18} TARGET")
        for e in page.items:
            drill_mark = " (drill)" if e.dry_run else ""
            typer.echo(f"{e.id:>6}  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.runbook_id[:28]:<28} "
                       f"{e.status:<18} {e.target}{drill_mark}")

    @app.command()
    def show(execution_id: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """One execution in full: steps, approvals and timeline."""
        from app.history.queries import execution_detail

        async def work(_: Settings, factory: Any) -> Any:
            async with factory() as session:
                return await execution_detail(session, execution_id)

        detail = _run(work)
        if as_json:
            typer.echo(detail.model_dump_json(indent=2))
            return
        typer.echo(f"execution {detail.id}: {detail.runbook_id} on {detail.target} — "
                   f"{detail.status}" + (f" ({detail.status_reason})" if detail.status_reason
                                         else ""))
        for s in detail.steps:
            typer.echo(f"  {s.kind}:{s.step_id:<24} {s.status:<18} {s.summary or s.error or ''}")
        for a in detail.approvals:
            typer.echo(f"  {a.decision} by {a.identity} via {a.channel} at {a.created_at:%H:%M:%S}")
        for ev in detail.timeline:
            typer.echo(f"  {ev.created_at:%H:%M:%S} {ev.actor}: {ev.kind} {ev.to_state or ''} "
                       f"{ev.reason}")

    @app.command()
    def postmortem(execution_id: int) -> None:
        """Print a Markdown postmortem draft."""
        from app.history.postmortem import postmortem_markdown

        async def work(_: Settings, factory: Any) -> str:
            async with factory() as session:
                return await postmortem_markdown(session, execution_id)

        typer.echo(_run(work))

    def _decide(execution_id: int, step_id: str, decision: str, comment: str,
                token: str | None) -> None:
        from app.db import session_scope
        from app.engine.approvals import DecisionRequest, decide
        from app.engine.runbooks import RunbookVersions

        async def work(settings: Settings, factory: Any) -> Any:
            identity = _identity(settings, token)
            async with session_scope(factory) as session:
                return await decide(session, DecisionRequest(
                    execution_id=execution_id, step_id=step_id, identity=identity,
                    decision=decision, channel="cli", comment=comment,  # type: ignore[arg-type]
                ), runbooks=RunbookVersions(lambda: None))

        outcome = _run(work)
        typer.echo(json.dumps(outcome.as_dict()))

    @app.command()
    def approve(execution_id: int, step_id: str, comment: str = "", token: Token = None) -> None:
        """Approve a risky step (the running service picks it up within a poll)."""
        _decide(execution_id, step_id, "approve", comment, token)

    @app.command()
    def reject(execution_id: int, step_id: str, comment: str = "", token: Token = None) -> None:
        """Reject a risky step; the execution ends as rejected."""
        _decide(execution_id, step_id, "reject", comment, token)

    @app.command()
    def cancel(execution_id: int, reason: str = "", token: Token = None) -> None:
        """Cancel an active execution."""
        from app.db import session_scope
        from app.engine.executions import cancel_execution

        async def work(settings: Settings, factory: Any) -> str:
            actor = _identity(settings, token).name if token else _cli_actor()
            async with session_scope(factory) as session:
                execution = await cancel_execution(session, execution_id, actor=actor,
                                                   reason=reason or f"cancelled by {actor}")
                return execution.status

        typer.echo(_run(work))

    def _guard(key: str, engaged: bool, reason: str) -> None:
        from app.db import session_scope
        from app.engine.guards import set_guard

        async def work(_: Settings, factory: Any) -> None:
            async with session_scope(factory) as session:
                await set_guard(session, key, engaged=engaged, actor=_cli_actor(), reason=reason)

        _run(work)
        typer.echo(f"{key}: {'engaged' if engaged else 'released'}")

    @app.command()
    def pause(runbook: str, reason: str = "") -> None:
        """Pause a runbook: its executions wait (they are never dropped)."""
        _guard(f"runbook:{runbook}", True, reason)

    @app.command()
    def resume(runbook: str, reason: str = "") -> None:
        """Resume a paused runbook; waiting executions continue."""
        _guard(f"runbook:{runbook}", False, reason)

    @app.command("kill-switch")
    def kill_switch(state: Annotated[str, typer.Argument(help="on | off")],
                    reason: str = "") -> None:
        """Stop (on) or release (off) all automation."""
        if state not in ("on", "off"):
            raise typer.BadParameter("say on or off")
        _guard("global", state == "on", reason)

    @app.command()
    def prune() -> None:
        """Delete history older than RUNBOOKD_RETENTION_DAYS (see README: Retention)."""
        from app.history.retention import prune_all

        async def work(settings: Settings, factory: Any) -> int:
            if settings.retention_days <= 0:
                return 0
            return await prune_all(factory, days=settings.retention_days)

        typer.echo(f"pruned {_run(work)} rows")

    @app.command("demo-registry")
    def demo_registry(quiet: bool = False) -> None:
        """Create the demo model registry (demo-model v1 and v2, champion on v2); re-runnable."""
        from app.actions.embedded_registry import create_demo_registry

        path = get_settings().registry_dir
        create_demo_registry(path)
        if not quiet:
            typer.echo(f"demo registry ready at {path}: demo-model v1, v2; champion -> 2")

    @app.command()
    def worker() -> None:
        """Run only the executor worker and the notification sender (no HTTP)."""
        from app.cli.worker_process import run_worker

        asyncio.run(run_worker(get_settings()))

