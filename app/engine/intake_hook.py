"""The intake's mapper hook: new alerts start executions, resolved ones may cancel them.

It runs inside the intake's transaction, so an alert and the execution it starts commit
together (or not at all), and a redelivery, which changes no alert, starts nothing. It wakes
the worker once that transaction commits, and only when it gave the engine work: a storm of
alerts that no runbook handles costs the worker nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.loader import Catalog
from app.catalog.params import ParamError, render_target, resolve_params
from app.catalog.templating import RenderError
from app.db import after_commit
from app.engine.executions import on_alert_resolved, start_or_attach
from app.engine.runbooks import RunbookVersions
from app.intake.models import CHANGED, FIRING, RESOLVED, Alert
from app.intake.service import AlertChange, AlertHook

ACTOR = "system:intake"


def make_alert_hook(
    current_catalog: Callable[[], Catalog | None], runbooks: RunbookVersions, *,
    wake: Callable[[], None] = lambda: None,
) -> AlertHook:
    """Bind the hook to the live catalog (it follows reloads), the runbook versions, and
    the worker's wake-up."""

    async def hook(session: AsyncSession, changes: list[AlertChange]) -> None:
        catalog = current_catalog()
        notes: dict[int, str] = {}
        engine_work = False
        for change in changes:
            alert = change.alert
            if alert.status == RESOLVED:
                if change.kind == CHANGED:
                    await on_alert_resolved(session, alert_id=change.alert_id,
                                            runbook_of=runbooks)
                    engine_work = True
                continue
            if change.kind == CHANGED and alert.status != FIRING:
                continue  # acknowledged: no new work
            note, started = await _start(session, catalog, change)
            notes[change.alert_id] = note[:2000]
            engine_work = engine_work or started
        if notes:
            # One statement for the batch: a storm of new alerts is one write, not thousands.
            await session.execute(update(Alert), [
                {"id": alert_id, "match_note": note} for alert_id, note in notes.items()])
        if engine_work:
            after_commit(session, wake)

    return hook


async def _start(session: AsyncSession, catalog: Catalog | None,
                 change: AlertChange) -> tuple[str, bool]:
    """Start or join an execution for each matching runbook: (the alert's note, whether any
    execution was started or joined)."""
    alert = change.alert
    matches = catalog.match(alert.labels) if catalog is not None else []
    if not matches:
        return "no runbook matched", False
    notes = []
    started = False
    for mapping, loaded in matches:
        runbook = loaded.runbook
        try:
            params = resolve_params(runbook, labels=alert.labels,
                                    annotations=alert.annotations, overrides=mapping.params)
            target = render_target(runbook, params)
        except (ParamError, RenderError, ValueError) as exc:
            notes.append(f"{mapping.name} -> {runbook.id}: no execution: {exc}")
            continue
        execution, created = await start_or_attach(
            session, runbook=runbook, version=loaded.version, target=target, params=params,
            alert_id=change.alert_id, alert_fired_at=alert.starts_at, actor=ACTOR,
        )
        verb = "started" if created else "joined"
        notes.append(f"{mapping.name} -> {runbook.id}: {verb} execution {execution.id}")
        started = True
    return "; ".join(notes), started
