"""`runbookd demo-registry`: the model registry the demo runbooks act on."""

from __future__ import annotations

from typing import Annotated

import typer

from app.actions.embedded_registry import create_demo_registry
from app.config import get_settings

app = typer.Typer()


@app.command("demo-registry")
def demo_registry(
    quiet: Annotated[bool, typer.Option(help="Print nothing on success.")] = False,
) -> None:
    """Create the demo model registry (demo-model v1 and v2, champion on v2); re-runnable."""
    path = get_settings().registry_dir
    create_demo_registry(path)
    if not quiet:
        typer.echo(f"demo registry ready at {path}: demo-model v1, v2; champion -> 2")
