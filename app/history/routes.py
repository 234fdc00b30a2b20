"""The history API: what the automation did, when, and who approved it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from app.db import SessionDep, utcnow
from app.engine.states import EXECUTION_STATES
from app.errors import Invalid
from app.history.audit import AuditFilter, AuditPage, audit_page, export_jsonl
from app.history.postmortem import postmortem_markdown
from app.history.queries import ExecutionFilter, execution_detail, list_executions
from app.history.schemas import ExecutionDetail, ExecutionPage
from app.history.stats import StatsOut, compute_stats
from app.identity import Identity
from app.identity.deps import require
from app.paging import BIGINT_MAX, MAX_LIMIT, RowId, UtcInstant, parse_label_filters

router = APIRouter(prefix="/api/v1", tags=["history"])
Viewer = Annotated[Identity, Depends(require("viewer"))]


def execution_filter(
    runbook: str | None = None,
    status: str | None = None,
    target: str | None = None,
    alertname: str | None = None,
    label: Annotated[list[str], Query(description="name=value, repeatable")] = [],  # noqa: B006
    source: str | None = None,
    actor: str | None = Query(default=None, description="who approved, or started it"),
    drill: bool | None = None,
    since: UtcInstant | None = None,
    until: UtcInstant | None = None,
) -> ExecutionFilter:
    """Filters shared by the list endpoint, the web page and the export."""
    if status is not None and status not in EXECUTION_STATES:
        raise Invalid(f"unknown status {status[:40]!r}; one of {', '.join(EXECUTION_STATES)}",
                      details=[{"field": "status", "message": "unknown status"}])
    return ExecutionFilter(runbook=runbook, status=status, target=target, alertname=alertname,
                           labels=parse_label_filters(label), source=source, actor=actor,
                           drill=drill, since=since, until=until)


@router.get("/executions", response_model=ExecutionPage)
async def get_executions(
    session: SessionDep, _: Viewer, flt: Annotated[ExecutionFilter, Depends(execution_filter)],
    cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> ExecutionPage:
    """Executions newest first, filtered, with a cursor that stays stable under inserts."""
    return await list_executions(session, flt, cursor=cursor, limit=limit)


@router.get("/executions/{execution_id}", response_model=ExecutionDetail,
            responses={404: {}})
async def get_execution(execution_id: RowId, session: SessionDep, _: Viewer) -> ExecutionDetail:
    """The full record of one execution."""
    return await execution_detail(session, execution_id)


@router.get("/executions/{execution_id}/postmortem", response_class=PlainTextResponse,
            responses={200: {"content": {"text/markdown": {}}}, 404: {}})
async def get_postmortem(execution_id: RowId, session: SessionDep, _: Viewer) -> PlainTextResponse:
    """A Markdown postmortem draft from the runbook's template and the recorded facts."""
    text = await postmortem_markdown(session, execution_id)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@router.get("/audit", response_model=AuditPage, tags=["audit"], responses={
    200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}})
async def get_audit(
    request: Request, session: SessionDep, _: Viewer,
    kind: str | None = None, actor: str | None = None,
    execution_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    since: UtcInstant | None = None, until: UtcInstant | None = None,
    after: Annotated[int | None, Query(ge=0, le=BIGINT_MAX,
                                       description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    format: Literal["json", "jsonl"] = "json",
) -> Any:
    """The append-only audit log; `format=jsonl` exports every match as JSON lines."""
    flt = AuditFilter(kind=kind, actor=actor, execution_id=execution_id, since=since,
                      until=until)
    if format == "jsonl":
        return StreamingResponse(export_jsonl(request.app.state.session_factory, flt),
                                 media_type="application/x-ndjson")
    return await audit_page(session, flt, after=after, limit=limit)


@router.get("/stats", response_model=StatsOut, tags=["stats"])
async def get_stats(
    session: SessionDep, _: Viewer, since: UtcInstant | None = None,
    until: UtcInstant | None = None, runbook: str | None = None,
) -> StatsOut:
    """Outcomes, automation and time to acknowledge/approve/restore, per runbook and overall
    (default: the last 30 days)."""
    until = _aware(until) or utcnow()
    since = _aware(since) or until - dt.timedelta(days=30)
    if since >= until:
        raise Invalid("since must be before until",
                      details=[{"field": "since", "message": "after until"}])
    return await compute_stats(session, since=since, until=until, runbook=runbook)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
