"""The intake's mapper hook: new alerts start executions, resolved ones may cancel them.

It runs inside the intake's transaction, so an alert and the execution it starts commit
together (or not at all), and a redelivery, which changes no alert, starts nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.params import ParamError, alert_scope, render_target, resolve_params
from app.catalog.templating import RenderError
from app.engine.runbooks import RunbookVersions
from app.engine.service import on_alert_resolved, start_or_attach
from app.intake.models import Alert
from app.intake.normalize import RESOLVED
from app.intake.service import AlertChange

ACTOR = "system:intake"


def make_alert_hook(
    current_catalog: Callable[[], Any], runbooks: RunbookVersions,
) -> Callable[[AsyncSession, list[AlertChange]], Any]:
    """Bind the hook to the live catalog (it follows reloads) and the runbook versions."""

    async def hook(session: AsyncSession, changes: list[AlertChange]) -> None:
        catalog = current_catalog()
        notes: dict[int, str] = {}
        for change in changes:
            alert = change.alert
            if alert.status == RESOLVED:
                if change.kind == "changed":
                    await on_alert_resolved(session, alert_id=change.alert_id,
                                            runbook_of=runbooks.get)
                continue
            if change.kind == "changed" and alert.status != "firing":
                continue  # acknowledged: no new work
            notes[change.alert_id] = await _start(session, catalog, change)
        for alert_id, note in notes.items():
            await session.execute(update(Alert).where(Alert.id == alert_id)
                                  .values(match_note=note[:2000]))

    return hook


async def _start(session: AsyncSession, catalog: Any, change: AlertChange) -> str:
    alert = change.alert
    matches = catalog.match(alert.labels) if catalog is not None else []
    if not matches:
        return "no runbook matched"
    notes = []
    scope = alert_scope(labels=alert.labels, annotations=alert.annotations, status=alert.status,
                        source=alert.source, fingerprint=alert.fingerprint,
                        starts_at=alert.starts_at.isoformat())
    for mapping, loaded in matches:
        runbook = loaded.runbook
        try:
            params = resolve_params(runbook, labels=alert.labels,
                                    annotations=alert.annotations, overrides=mapping.params)
            target = render_target(runbook, params, scope)
        except (ParamError, RenderError, ValueError) as exc:
            notes.append(f"{mapping.name} -> {runbook.id}: no execution: {exc}")
            continue
        execution, created = await start_or_attach(
            session, runbook=runbook, version=loaded.version, target=target, params=params,
            alert_id=change.alert_id, alert_fired_at=alert.starts_at, actor=ACTOR,
        )
        verb = "started" if created else "joined"
        notes.append(f"{mapping.name} -> {runbook.id}: {verb} execution {execution.id}")
    return "; ".join(notes)
