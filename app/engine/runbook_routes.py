"""The runbook list and simulate over HTTP: catalog views that consult the live guards.

They live in the engine because the guards do; the catalog's own routes are in
`app/catalog/routes.py`. Thin: look up, call the service, return.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.catalog.loader import Catalog
from app.catalog.routes import ERRORS
from app.catalog.simulate import SimAlert, SimulationReport, alerts_from_body, simulate_alerts
from app.db import SessionDep, utcnow
from app.durations import format_duration
from app.engine.guards import current_guard_state
from app.engine.simulate_plans import add_limits, add_plans
from app.identity import Identity
from app.identity.deps import require

router = APIRouter(tags=["catalog"])

Viewer = Annotated[Identity, Depends(require("viewer"))]


class RunbookSummary(BaseModel):
    id: str
    title: str
    owner: str
    severity: str
    version: str
    path: str
    steps: int
    risky_steps: int
    reviewed_at: dt.date
    review_every: str
    review_due: dt.date
    review_overdue: bool
    paused: bool
    paused_reason: str | None = None


class SimulateRequest(BaseModel):
    """Either `alert` (an Alertmanager, Grafana or PagerDuty V3 body) or `labels`."""

    model_config = ConfigDict(extra="forbid")
    alert: dict[str, Any] | list[dict[str, Any]] | None = None
    labels: dict[str, str] | None = Field(default=None, max_length=256)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=256)

    @model_validator(mode="after")
    def _one_input(self) -> SimulateRequest:
        if (self.alert is None) == (self.labels is None):
            raise ValueError("give exactly one of `alert` or `labels`")
        return self


def _catalog(request: Request) -> Catalog:
    return request.app.state.catalog.catalog


@router.get("/api/v1/runbooks", response_model=list[RunbookSummary], responses=ERRORS)
async def list_runbooks(request: Request, session: SessionDep,
                        _: Viewer) -> list[RunbookSummary]:
    """Every runbook in the live catalog, with its review status and whether it is paused."""
    guards = await current_guard_state(session)
    today = utcnow().date()
    out = []
    for loaded in sorted(_catalog(request).runbooks.values(), key=lambda lr: lr.runbook.id):
        rb = loaded.runbook
        due = rb.reviewed_at + rb.review_every
        held = guards.holds(rb.id)
        out.append(RunbookSummary(
            id=rb.id, title=rb.title, owner=rb.owner, severity=rb.severity,
            version=loaded.version, path=loaded.path, steps=len(rb.steps),
            risky_steps=sum(s.risk == "risky" for s in rb.steps), reviewed_at=rb.reviewed_at,
            review_every=format_duration(rb.review_every), review_due=due,
            review_overdue=due < today, paused=held is not None, paused_reason=held,
        ))
    return out


@router.post("/api/v1/simulate", response_model=SimulationReport,
             responses={**ERRORS, 422: {"description": "not an alert body"}})
async def simulate_alert(request: Request, body: SimulateRequest, session: SessionDep,
                         _: Viewer, plan: bool = False) -> SimulationReport:
    """What the catalog would do with an alert; nothing is stored and nothing runs.

    The limits show how much of each budget is spent now, and whether this alert would join
    a running execution, be rate limited, wait for a slot, or have a step skipped. With
    `plan=true`, each risky step also shows its plan: the concrete change it would make now,
    read from the live systems (read-only)."""
    if body.alert is not None:
        alerts = alerts_from_body(body.alert)
    else:
        alerts = [SimAlert(source="manual", labels=body.labels or {},
                           annotations=body.annotations)]
    guards = await current_guard_state(session)
    actions = request.app.state.catalog.actions
    report = simulate_alerts(_catalog(request), alerts, guards=guards,
                             actions=actions if isinstance(actions, dict) else None)
    report = await add_limits(report, session=session, settings=request.app.state.settings)
    if plan:
        engine = request.app.state.engine
        report = await add_plans(report, registry=engine.registry, settings=engine.settings,
                                 http=engine.http)
    return report
