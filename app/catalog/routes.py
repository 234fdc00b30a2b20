"""The catalog over HTTP: reload, a runbook, its versions, and the mappings. Thin.

The runbook list and simulate consult the guards, so they are the engine's
(`app/engine/runbook_routes.py`).

Routes read the live catalog from `request.app.state.catalog` (a CatalogHolder, whose
`actions` also let simulate validate rendered parameters) and open sessions from
`request.app.state.session_factory`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from app.catalog.loader import Catalog
from app.catalog.service import CatalogHolder, list_versions
from app.db import SessionDep
from app.errors import CatalogInvalid, NotFound
from app.identity import Identity
from app.identity.deps import require

log = logging.getLogger(__name__)
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


def _holder(request: Request) -> CatalogHolder:
    return request.app.state.catalog


def _catalog(request: Request) -> Catalog:
    return _holder(request).catalog


@router.post("/-/reload", tags=["ops"], response_model=ReloadSummary,
             responses={**ERRORS, 400: {"description": "the catalog is invalid: every error"}})
async def reload_catalog(request: Request, identity: Admin) -> ReloadSummary:
    """Reload the runbooks and mappings from disk; an invalid catalog keeps the old one."""
    holder = _holder(request)
    try:
        catalog = await holder.reload(
            request.app.state.session_factory, actor=identity.name,
            source_addr=request.client.host if request.client else None)
    except CatalogInvalid as exc:
        # The caller sees every error; the log gets one line for whoever watches the service.
        errors = exc.details or [exc.message]
        log.warning("catalog reload by %s rejected; the old catalog stays: %d error(s), "
                    "the first: %s", identity.name, len(errors), errors[0])
        raise
    return ReloadSummary(
        runbooks=len(catalog.runbooks), mappings=len(catalog.mappings),
        new_versions=holder.last_new_versions, warnings=[str(w) for w in catalog.warnings],
        loaded_at=catalog.loaded_at,
    )


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
