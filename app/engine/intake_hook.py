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
from app.engine.executions import on_alert_resolved
from app.engine.runbooks import RunbookVersions
from app.engine.starts import Start, start_or_attach_all
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
        starting = _Starts()
        for change in changes:
            alert = change.alert
            if alert.status == RESOLVED:
                if change.kind == CHANGED:
                    # The firing alerts before it start (or join) first, as they came.
                    engine_work |= await starting.flush(session, notes)
                    await on_alert_resolved(session, alert_id=change.alert_id,
                                            runbook_of=runbooks)
                    engine_work = True
                continue
            if change.kind == CHANGED and alert.status != FIRING:
                continue  # acknowledged: no new work
            starting.add(catalog, change, notes)
        engine_work |= await starting.flush(session, notes)
        if notes:
            # One statement for the batch: a storm of new alerts is one write, not thousands.
            await session.execute(update(Alert), [
                {"id": alert_id, "match_note": note[:2000]} for alert_id, note in notes.items()])
        if engine_work:
            after_commit(session, wake)

    return hook


class _Starts:
    """The firing alerts' starts, gathered so that a run of them costs a few statements."""

    def __init__(self) -> None:
        # Per match, in the catalog's order: (alert id, mapping name, the start to make, or
        # the note saying why there is none).
        self.pending: list[tuple[int, str, Start | str]] = []

    def add(self, catalog: Catalog | None, change: AlertChange, notes: dict[int, str]) -> None:
        """Plan a start for each runbook the alert matches; note the alerts that start none."""
        alert = change.alert
        matches = catalog.match(alert.labels) if catalog is not None else []
        if not matches:
            notes[change.alert_id] = "no runbook matched"
            return
        for mapping, loaded in matches:
            runbook = loaded.runbook
            try:
                params = resolve_params(runbook, labels=alert.labels,
                                        annotations=alert.annotations,
                                        overrides=mapping.params)
                target = render_target(runbook, params)
            except (ParamError, RenderError, ValueError) as exc:
                self.pending.append((change.alert_id, mapping.name,
                                     f"{mapping.name} -> {runbook.id}: no execution: {exc}"))
                continue
            self.pending.append((change.alert_id, mapping.name, Start(
                runbook=runbook, version=loaded.version, target=target, params=params,
                alert_id=change.alert_id, alert_fired_at=alert.starts_at)))

    async def flush(self, session: AsyncSession, notes: dict[int, str]) -> bool:
        """Start or join what was planned and note per alert what became of each match.
        Whether any execution was started or joined."""
        planned = [start for _, _, start in self.pending if isinstance(start, Start)]
        outcomes = iter(await start_or_attach_all(session, planned, actor=ACTOR)
                        if planned else [])
        lines: dict[int, list[str]] = {}
        for alert_id, name, start in self.pending:
            if isinstance(start, Start):
                started = next(outcomes)
                verb = "started" if started.created else "joined"
                line = f"{name} -> {start.runbook.id}: {verb} execution {started.execution_id}"
            else:
                line = start
            lines.setdefault(alert_id, []).append(line)
        notes.update({alert_id: "; ".join(parts) for alert_id, parts in lines.items()})
        self.pending = []
        return bool(planned)
