"""`runbookd demo-registry` and `runbookd registry show`: the embedded model registry the demo
runbooks act on, made and read from a terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from app.actions.embedded_registry import (
    DEMO_MODEL,
    ModelRegistry,
    RegistryError,
    create_demo_registry,
)
from app.config import get_settings

app = typer.Typer()
registry_app = typer.Typer(help="The embedded model registry (RUNBOOKD_REGISTRY_DIR).",
                           no_args_is_help=True)
app.add_typer(registry_app, name="registry")

# History lines `registry show` prints per alias: the recent moves are what a responder asks.
HISTORY_SHOWN = 10


@app.command("demo-registry")
def demo_registry(
    quiet: Annotated[bool, typer.Option(help="Print nothing on success.")] = False,
) -> None:
    """Create the demo model registry (demo-model v1 and v2, champion on v2); re-runnable."""
    path = get_settings().registry_dir
    registry = ModelRegistry(path)
    kept = _champion(registry) is not None
    create_demo_registry(path)
    if quiet:
        return
    # Read back, never assumed: a later run keeps the champion that a rollback moved.
    versions = ", ".join(f"v{v}" for v in registry.list_versions(DEMO_MODEL))
    line = (f"demo registry ready at {path}: {DEMO_MODEL} {versions}; "
            f"champion -> {_champion(registry) or '(unset)'}")
    if kept:
        line += f" (kept from an earlier run; runbookd registry show {DEMO_MODEL})"
    typer.echo(line)


def _champion(registry: ModelRegistry) -> str | None:
    """The version demo-model's champion points at; None before the first run."""
    try:
        state = registry.get_alias(DEMO_MODEL, "champion")
    except RegistryError:
        return None
    return state.version if state else None


@registry_app.command("show")
def registry_show(
    model: Annotated[str, typer.Argument(help="The model, e.g. demo-model.")],
) -> None:
    """Show a model's aliases, versions and each alias's recent history."""
    path = get_settings().registry_dir
    registry = ModelRegistry(path)
    try:
        lines = _describe(registry, model)
    except RegistryError as exc:
        hint = " (make run, or runbookd demo-registry, creates demo-model)"
        typer.secho(f"runbookd: {exc}{hint if model == DEMO_MODEL else ''}", err=True,
                    fg="red")
        raise typer.Exit(1) from None
    typer.echo(f"{model} in {path}")
    for line in lines:
        typer.echo(line)


def _describe(registry: ModelRegistry, model: str) -> list[str]:
    """The lines of `registry show`: aliases, then versions, then each alias's history."""
    aliases = registry.aliases(model)
    versions = registry.list_versions(model)
    lines = ["aliases:"]
    for alias in sorted(aliases):
        state = registry.get_alias(model, alias)
        assert state is not None
        by = f" by execution {state.execution_id}" if state.execution_id is not None else ""
        lines.append(f"  {alias} -> {state.version}  (set {state.set_at or '?'}{by}"
                     f"{'; reason: ' + state.reason if state.reason else ''})")
    if not aliases:
        lines.append("  (none)")
    held = {version: sorted(a for a, v in aliases.items() if v == version)
            for version in versions}
    lines.append("versions:")
    lines += [f"  {version}" + (f"  <- {', '.join(held[version])}" if held[version] else "")
              for version in versions]
    for alias in sorted(aliases):
        history = registry.history(model, alias)
        lines.append(f"history of {alias} (newest last):")
        for entry in history[-HISTORY_SHOWN:]:
            by = (f" by execution {entry.execution_id}{_step(entry.step_id)}"
                  if entry.execution_id is not None else "")
            lines.append(f"  {entry.time}  {entry.from_version or '(unset)'} -> "
                         f"{entry.to_version}  {entry.kind}{by}"
                         f"{'; reason: ' + entry.reason if entry.reason else ''}")
    return lines


def _step(step_id: str | None) -> str:
    # The engine records the step run's row id (its resume key), not the runbook's step id.
    if step_id is None:
        return ""
    return f", step run {step_id}" if step_id.isdigit() else f", step {step_id}"
