"""The `runbookd` command line."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from app.config import get_settings
from app.identity import ROLES, create_token

app = typer.Typer(help="runbookd: alert-driven remediation for ML pipelines.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")


def _configure_logging() -> None:
    logging.basicConfig(level=os.environ.get("RUNBOOKD_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP service (and, unless disabled, the executor worker)."""
    _configure_logging()
    settings = get_settings()
    if settings.env == "dev" and settings.dev_token is None:
        # A fresh token per start, printed once, so the demo is usable without a tokens file.
        os.environ["RUNBOOKD_DEV_TOKEN"] = "dev_" + secrets.token_urlsafe(24)
        get_settings.cache_clear()
        settings = get_settings()
    url = f"http://{host}:{port}"
    typer.echo(f"runbookd listening on {url}  (env={settings.env})")
    if settings.env == "dev" and settings.dev_token is not None:
        typer.echo(f"development token (admin, and accepted on webhooks): "
                   f"{settings.dev_token.get_secret_value()}")
    import uvicorn

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from app.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' empties the schema)."""
    from app.migrate import downgrade

    downgrade(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Identity name, e.g. alice.")],
    role: Annotated[list[str], typer.Option("--role", help="viewer|responder|approver|admin")],
    file: Annotated[Path | None, typer.Option(help="Tokens file (RUNBOOKD_API_TOKENS_FILE).")]
    = None,
) -> None:
    """Add an identity to the tokens file and print its token, once."""
    path = file or get_settings().api_tokens_file
    if path is None:
        raise typer.BadParameter("set RUNBOOKD_API_TOKENS_FILE or pass --file")
    bad = [r for r in role if r not in ROLES]
    if bad:
        raise typer.BadParameter(f"unknown role(s) {bad}; choose from {', '.join(ROLES)}")
    try:
        token = create_token(path, name, role)  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(token)


def _register_subcommands() -> None:
    from app.cli.catalog import register as register_catalog
    from app.cli.operations import register as register_operations

    register_catalog(app)
    register_operations(app)


_register_subcommands()


def main() -> None:
    app()
