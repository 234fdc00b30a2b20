"""`runbookd lint` and `runbookd simulate`: the catalog's command-line tools.

Both read only files (and, for simulate, the guard switches and the spent budgets of the
limits when a database is there), so they are safe in a pre-commit hook: `runbookd lint`
with no arguments checks the configured mappings file and remediations directory; it needs
the whole catalog for its cross-file checks, so run the hook with `pass_filenames: false`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.actions.registry import default_registry
from app.catalog.lint import lint
from app.catalog.parser import registry_specs
from app.cli.common import key_values, on_fresh_engine
from app.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.catalog.loader import Catalog
    from app.catalog.simulate import SimAlert, SimCheck, SimRunbook, SimulationReport
    from app.catalog.simulate_limits import SimLimits, SimStepRate
    from app.config import Settings

app = typer.Typer()


def _configured_paths() -> tuple[Path, Path]:
    try:
        settings = get_settings()
        return settings.mappings, settings.remediations_dir
    except Exception:
        # Lint needs no secrets; a settings problem must not stop a pre-commit hook.
        return (Path(os.environ.get("RUNBOOKD_MAPPINGS", "alert_mappings.yaml")),
                Path(os.environ.get("RUNBOOKD_REMEDIATIONS_DIR", "remediations")))


def _action_specs() -> dict[str, Any]:
    return registry_specs(default_registry())


@app.command("lint")
def lint_command(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Runbook files, directories and mappings files (default: the configured "
             "mappings file and remediations directory).")] = None,
) -> None:
    """Check runbooks and mappings; print file:line:col: severity: message. Exit 1 on errors."""
    targets = list(paths) if paths else list(_configured_paths())
    issues = lint(*targets, actions=_action_specs())
    for issue in issues:
        typer.echo(str(issue))
    errors = sum(i.severity == "error" for i in issues)
    warnings = len(issues) - errors
    if errors or warnings:
        typer.echo(f"{errors} error(s), {warnings} warning(s)", err=True)
    raise typer.Exit(1 if errors else 0)


@app.command("simulate")
def simulate_command(
    alert_json: Annotated[Path | None, typer.Argument(
        help="An Alertmanager, Grafana or PagerDuty V3 body, as JSON ('-' reads stdin).")]
    = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", "-l", help="A label as key=value; repeat for more.")] = None,
    annotation: Annotated[list[str] | None, typer.Option(
        "--annotation", "-a", help="An annotation as key=value; repeat for more.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    guards: Annotated[bool, typer.Option(
        "--guards/--no-guards", help="Read the kill switch and pauses from the database.")]
    = True,
) -> None:
    """Show what the catalog would do with an alert: matches, params and every step."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: lint needs none of them.
    from app.catalog.loader import load_catalog
    from app.catalog.simulate import SimAlert, alerts_from_body
    from app.errors import CatalogInvalid, Invalid

    if (alert_json is None) == (not label):
        raise typer.BadParameter("give an ALERT_JSON file or --label key=value pairs")
    specs = _action_specs()
    mappings, remediations = _configured_paths()
    try:
        catalog = load_catalog(mappings, remediations, action_names=specs)
    except CatalogInvalid as exc:
        for line in exc.details or [exc.message]:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    try:
        if alert_json is not None:
            text = sys.stdin.read() if str(alert_json) == "-" else alert_json.read_text()
            alerts = alerts_from_body(json.loads(text))
        else:
            alerts = [SimAlert(source="manual", labels=key_values(label or [], "--label"),
                               annotations=key_values(annotation or [], "--annotation"))]
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read the alert: {exc}") from None
    except Invalid as exc:
        details = "; ".join(f"{d['field']}: {d['message']}" for d in exc.details or [])
        raise typer.BadParameter(f"{exc.message}{': ' + details if details else ''}") from None
    report, note = _simulate_live(catalog, alerts, specs, read=guards)
    if note:
        report.notes.append(note)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo(format_report(report))


def _simulate_live(catalog: Catalog, alerts: list[SimAlert], specs: dict[str, Any], *,
                   read: bool) -> tuple[SimulationReport, str | None]:
    """The simulation with the guard switches and the limits' budgets read from the
    configured database; without them (and a note saying why) when it cannot be read."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from sqlalchemy.engine import make_url

    from app.catalog.simulate import simulate_alerts

    def offline(note: str) -> tuple[SimulationReport, str]:
        return simulate_alerts(catalog, alerts, actions=specs), note

    if not read:
        return offline("guards and limits not read (--no-guards)")
    try:
        settings = get_settings()
        parsed = make_url(settings.database_url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
            return offline(f"guards and limits not read: no database at {parsed.database}")

        async def live(factory: async_sessionmaker[AsyncSession]) -> SimulationReport:
            return await _read_live(factory, catalog, alerts, specs, settings)

        return asyncio.run(on_fresh_engine(settings.database_url, live)), None
    except Exception as exc:
        return offline(f"guards and limits not read: {type(exc).__name__}: {str(exc)[:200]}")


async def _read_live(factory: async_sessionmaker[AsyncSession], catalog: Catalog,
                     alerts: list[SimAlert], specs: dict[str, Any],
                     settings: Settings) -> SimulationReport:
    """The switches and the budgets, read in one session; a database that hangs gets 5
    seconds."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.catalog.simulate import simulate_alerts
    from app.engine.guards import current_guard_state
    from app.engine.simulate_plans import add_limits

    async with factory() as session:
        state = await asyncio.wait_for(current_guard_state(session), timeout=5)
        report = simulate_alerts(catalog, alerts, guards=state, actions=specs)
        return await asyncio.wait_for(add_limits(report, session=session, settings=settings),
                                      timeout=5)


def format_report(report: SimulationReport) -> str:
    """The simulation for a person at a terminal."""
    lines: list[str] = []
    total = len(report.results)
    for n, result in enumerate(report.results, start=1):
        alert = result.alert
        shown = " ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
        lines.append(f"alert {n} of {total} ({alert.source}, {alert.status}): {shown}")
        if not result.matched:
            lines.append("  no mapping matches: no execution")
        for plan in result.runbooks:
            lines += _format_plan(plan)
        lines.append("")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines).rstrip() + "\n"


def _format_plan(plan: SimRunbook) -> list[str]:
    lines = [f"  mapping {plan.mapping!r} -> runbook {plan.runbook} ({plan.title}), "
             f"version {plan.version[:12]}",
             f"    {plan.reason}"]
    for problem in plan.param_errors:
        lines.append(f"    param error: {problem.name}: {problem.reason}")
    if plan.params is not None:
        lines.append("    params:  " + "  ".join(f"{k}={v}" for k, v in plan.params.items()))
    if plan.target is not None:
        lines.append(f"    target:  {plan.target}")
    lines += _format_limits(plan.limits)
    for check in plan.preconditions if plan.params is not None else []:
        lines += _format_check("precondition", check, indent=4)
    lines.append("    steps:")
    if plan.params is None:  # nothing rendered: the plan in one line a step
        lines += [f"      {s.position}. {s.id}: {s.title} [{s.decision}]" for s in plan.steps]
        return lines
    for step in plan.steps:
        tag = {"run": "RUNS ON ITS OWN", "needs_approval": "NEEDS APPROVAL",
               "held": "HELD", "skipped": "SKIPPED"}[step.decision]
        lines.append(f"      {step.position}. {step.id}: {step.title}")
        lines.append(f"         [{tag}] {step.reason}")
        lines.append(f"         {step.action}"
                     + (f", on failure: {step.on_failure}" if step.on_failure != "stop" else "")
                     + (f", on success: {step.on_success}" if step.on_success != "next" else ""))
        lines += _format_with(step.with_, indent=11)
        if step.rate is not None:
            lines.append(f"         rate: {_format_step_rate(step.rate)}")
        lines += [f"         ! {e}" for e in step.errors]
        if step.verify is not None:
            lines += _format_check("verify", step.verify, indent=9)
        if step.rollback is not None:
            lines += _format_check("rollback", step.rollback, indent=9)
    return lines


def _format_limits(limits: SimLimits) -> list[str]:
    """The runbook's limits, with what is spent now when the database was read."""
    scope = "per target" if limits.concurrent_scope == "target" else "across the runbook"
    concurrent = f"{limits.concurrent} {scope}"
    if limits.active is not None:
        concurrent += f" ({limits.active} running now)"
    lines = [f"    limits:  rate per target: "
             f"{'; '.join(b.describe() for b in limits.rate) or 'none'}",
             f"             concurrent: {concurrent}"]
    breaker = limits.breaker
    if breaker is not None:
        text = f"{breaker.failures} failures within {breaker.within}"
        text += " (the engine's default)" if breaker.default else ""
        if breaker.failed is not None:
            text += f"; {breaker.failed} failed in that window now"
        lines.append(f"             breaker: {text}")
    else:
        lines.append("             breaker: the engine's default")
    if limits.verdict is not None:
        lines.append(f"             now: {limits.verdict}")
    return lines


def _format_step_rate(rate: SimStepRate) -> str:
    budgets = "; ".join(b.describe() for b in rate.budgets)
    key = rate.key if rate.key is not None else "not known yet"
    text = f"{budgets} for {'shared budget ' if rate.shared else 'budget '}{key}"
    return text + (f" ({rate.note})" if rate.note else "")


def _format_check(kind: str, check: SimCheck, *, indent: int) -> list[str]:
    pad = " " * indent
    within = f" within {check.within}" if check.within else ""
    lines = [f"{pad}{kind}: {check.action}{within}" + (f" ({check.title})" if check.title
                                                        else "")]
    lines += _format_with(check.with_, indent=indent + 2)
    lines += [f"{pad}! {e}" for e in check.errors]
    return lines


def _format_with(values: dict[str, Any], *, indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        first, *rest = text.strip().splitlines() or [""]
        lines.append(f"{pad}{key}: {first}")
        lines += [f"{pad}  {line}" for line in rest]
    return lines
