"""The catalog over HTTP: reload, runbooks, versions, mappings and simulate. Thin.

Routes read the live catalog from `request.app.state.catalog` (a CatalogHolder, whose
`actions` also let simulate validate rendered parameters) and open sessions from
`request.app.state.session_factory`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.catalog.durations import format_duration
from app.catalog.loader import Catalog
from app.catalog.service import CatalogHolder, list_versions
from app.catalog.simulate import SimAlert, SimulationReport, alerts_from_body, simulate_alerts
from app.db import SessionDep, utcnow
from app.engine.guards import current_guard_state
from app.errors import NotFound
from app.identity import Identity
from app.identity.deps import require

router = APIRouter(tags=["catalog"])

Viewer = Annotated[Identity, Depends(require("viewer"))]
Admin = Annotated[Identity, Depends(require("admin"))]
RunbookId = Annotated[str, Path(min_length=1, max_length=64)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no or wrong token"}, 403: {"description": "role too low"},
}


class ReloadSummary(BaseModel):
    status: Literal["ok"] = "ok"
    runbooks: int
    mappings: int
    new_versions: list[dict[str, str]]
    warnings: list[str]
    loaded_at: dt.datetime


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


class RunbookDetail(BaseModel):
    id: str
    version: str
    path: str
    loaded_at: dt.datetime
    content: dict[str, Any]


class VersionOut(BaseModel):
    version: str
    loaded_at: dt.datetime
    current: bool
    source_path: str | None = None


class MappingOut(BaseModel):
    position: int
    name: str
    matchers: list[str]
    runbook: str
    continue_: bool = Field(serialization_alias="continue")
    params: dict[str, Any]


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


def _holder(request: Request) -> CatalogHolder:
    return request.app.state.catalog


def _catalog(request: Request) -> Catalog:
    return _holder(request).catalog


@router.post("/-/reload", tags=["ops"], response_model=ReloadSummary,
             responses={**ERRORS, 400: {"description": "the catalog is invalid: every error"}})
async def reload_catalog(request: Request, identity: Admin) -> ReloadSummary:
    """Reload the runbooks and mappings from disk; an invalid catalog keeps the old one."""
    holder = _holder(request)
    catalog = await holder.reload(
        request.app.state.session_factory, actor=identity.name,
        source_addr=request.client.host if request.client else None)
    return ReloadSummary(
        runbooks=len(catalog.runbooks), mappings=len(catalog.mappings),
        new_versions=holder.last_new_versions, warnings=[str(w) for w in catalog.warnings],
        loaded_at=catalog.loaded_at,
    )


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


@router.get("/api/v1/runbooks/{runbook_id}", response_model=RunbookDetail,
            responses={**ERRORS, 404: {"description": "no such runbook"}})
async def get_runbook(request: Request, runbook_id: RunbookId, _: Viewer) -> RunbookDetail:
    """The full runbook document as loaded, and its version."""
    catalog = _catalog(request)
    loaded = catalog.runbooks.get(runbook_id)
    if loaded is None:
        raise NotFound(f"no runbook {runbook_id[:64]!r} in the catalog")
    return RunbookDetail(id=loaded.runbook.id, version=loaded.version, path=loaded.path,
                         loaded_at=catalog.loaded_at, content=loaded.content)


@router.get("/api/v1/runbooks/{runbook_id}/versions", response_model=list[VersionOut],
            responses={**ERRORS, 404: {"description": "no such runbook"}})
async def runbook_versions(request: Request, runbook_id: RunbookId, session: SessionDep,
                           _: Viewer) -> list[VersionOut]:
    """Every version of a runbook ever loaded, newest first."""
    rows = await list_versions(session, runbook_id)
    current = _catalog(request).runbooks.get(runbook_id)
    if not rows and current is None:
        raise NotFound(f"no runbook {runbook_id[:64]!r} has ever been loaded")
    return [VersionOut(version=r.version, loaded_at=r.loaded_at, source_path=r.source_path,
                       current=current is not None and current.version == r.version)
            for r in rows]


@router.get("/api/v1/mappings", response_model=list[MappingOut], responses=ERRORS)
async def list_mappings(request: Request, _: Viewer) -> list[MappingOut]:
    """The alert mappings in order: the first match wins unless it says `continue`."""
    return [MappingOut(position=m.index + 1, name=m.name, matchers=m.describe(),
                       runbook=m.runbook, continue_=m.continue_, params=dict(m.params))
            for m in _catalog(request).mappings]


@router.post("/api/v1/simulate", response_model=SimulationReport,
             responses={**ERRORS, 422: {"description": "not an alert body"}})
async def simulate_alert(request: Request, body: SimulateRequest, session: SessionDep,
                         _: Viewer) -> SimulationReport:
    """What the catalog would do with an alert; nothing is stored and nothing runs."""
    if body.alert is not None:
        alerts = alerts_from_body(body.alert)
    else:
        alerts = [SimAlert(source="manual", labels=body.labels or {},
                           annotations=body.annotations)]
    guards = await current_guard_state(session)
    actions = _holder(request).actions
    return simulate_alerts(_catalog(request), alerts, guards=guards,
                           actions=actions if isinstance(actions, dict) else None)
