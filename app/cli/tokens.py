"""`runbookd token create`: identities in the tokens file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.config import DEV_DIR, DEV_TOKENS_FILE, get_settings
from app.identity import ROLES, create_token

app = typer.Typer()
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Identity name, e.g. alice.")],
    role: Annotated[list[str], typer.Option("--role", help="viewer|responder|approver|admin")],
    file: Annotated[Path | None, typer.Option(help="Tokens file (RUNBOOKD_API_TOKENS_FILE).")]
    = None,
) -> None:
    """Add an identity to the tokens file and print its token, once. In dev the file is
    var/tokens.yaml unless one is set, and `make run` loads it."""
    settings = get_settings()
    path = file or settings.api_tokens_file or (
        DEV_DIR / DEV_TOKENS_FILE if settings.env == "dev" else None)
    if path is None:
        raise typer.BadParameter("set RUNBOOKD_API_TOKENS_FILE or pass --file")
    bad = [r for r in role if r not in ROLES]
    if bad:
        raise typer.BadParameter(f"unknown role(s) {bad}; choose from {', '.join(ROLES)}")
    try:
        token = create_token(path, name, role)  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"token for {name} ({', '.join(role)}), stored as a digest in {path}; "
               "shown once:")
    typer.echo(token)
