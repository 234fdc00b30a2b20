"""The `runbookd` command line: the root app, which adds each group of commands.

Each module holds one group and exposes `app`, a Typer whose commands are added here without
a name, so they appear at the top level (`runbookd serve`) or under their own group
(`runbookd db upgrade`).
"""

from __future__ import annotations

import typer

from app.cli import (
    approvals,
    brake,
    catalog,
    database,
    demo,
    drill,
    feedback,
    guards,
    history,
    service,
    signoff,
    tokens,
)

app = typer.Typer(help="runbookd: alert-driven remediation for ML pipelines.",
                  no_args_is_help=True, add_completion=False)
for group in (service, catalog, history, approvals, guards, brake, drill, feedback, signoff,
              demo, database, tokens):
    app.add_typer(group.app)


def main() -> None:
    """The `runbookd` console script."""
    app()
