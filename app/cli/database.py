"""`runbookd db upgrade|downgrade` (the schema) and `runbookd prune` (old history)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from app.cli.common import run
from app.config import get_settings

app = typer.Typer()
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Option(help="Alembic revision to reach.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: head)."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: Alembic is slow to load.
    from app.migrate import upgrade as migrate_up

    migrate_up(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def downgrade(
    revision: Annotated[str, typer.Argument(
        help="Alembic revision to return to ('base' empties the schema).")],
) -> None:
    """Revert migrations down to REVISION ('base' empties the schema)."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: Alembic is slow to load.
    from app.migrate import downgrade as migrate_down

    migrate_down(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def prune() -> None:
    """Delete history older than RUNBOOKD_RETENTION_DAYS (see README: Retention)."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.history.retention import prune_all

    days = get_settings().retention_days
    removed = run(partial(prune_all, days=days)) if days > 0 else 0
    typer.echo(f"pruned {removed} rows")
