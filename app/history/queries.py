"""Read-only queries over executions: the filtered, keyset-paged list and the full record.

The list pages on `(created_at, id)` with an index for each common filter (migrations), so a
page costs the same at row 50 and at row 1,000,000, and rows inserted meanwhile never shift a
page. No exact totals: a COUNT over millions of rows is what makes history pages slow.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import RunbookVersion
from app.db import json_key_equals
from app.engine.models import Approval, Execution, ExecutionAlert, StepRun
from app.errors import NotFound
from app.events import Event
from app.history.schemas import (
    AlertBrief,
    ApprovalOut,
    EventOut,
    ExecutionDetail,
    ExecutionOut,
    ExecutionPage,
    StepOut,
)
from app.intake.models import LABEL_VALUE_INDEXED, Alert, AlertLabel
from app.paging import decode_cursor, encode_cursor


@dataclass(frozen=True)
class ExecutionFilter:
    runbook: str | None = None
    status: str | None = None
    target: str | None = None
    alertname: str | None = None
    labels: list[tuple[str, str]] = field(default_factory=list)
    source: str | None = None
    actor: str | None = None
    drill: bool | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _via_alerts(condition: Any) -> Any:
    return (select(ExecutionAlert.execution_id)
            .join(Alert, Alert.id == ExecutionAlert.alert_id).where(condition))


def filtered(query: Any, flt: ExecutionFilter, dialect: str) -> Any:
    """Apply the filters to a query over Execution."""
    if flt.runbook:
        query = query.where(Execution.runbook_id == flt.runbook)
    if flt.status:
        query = query.where(Execution.status == flt.status)
    if flt.target:
        query = query.where(Execution.target == flt.target)
    if flt.drill is not None:
        query = query.where(Execution.dry_run.is_(flt.drill))
    if flt.since:
        query = query.where(Execution.created_at >= _utc(flt.since))
    if flt.until:
        query = query.where(Execution.created_at < _utc(flt.until))
    # Alert names and sources are few and common: walking executions newest-first and probing
    # each one's alert finds a page at once. A label value (a model, a host) is rare: then the
    # matching executions are found first, through the alert_labels index.
    if flt.alertname or flt.source:
        probe = select(ExecutionAlert.execution_id).join(
            Alert, Alert.id == ExecutionAlert.alert_id
        ).where(ExecutionAlert.execution_id == Execution.id)
        if flt.alertname:
            probe = probe.where(Alert.alertname == flt.alertname)
        if flt.source:
            probe = probe.where(Alert.source == flt.source)
        query = query.where(exists(probe))
    for name, value in flt.labels:
        if len(value) < LABEL_VALUE_INDEXED:
            query = query.where(Execution.id.in_(
                select(ExecutionAlert.execution_id)
                .join(AlertLabel, AlertLabel.alert_id == ExecutionAlert.alert_id)
                .where(AlertLabel.name == name, AlertLabel.value == value)))
        else:
            query = query.where(Execution.id.in_(_via_alerts(
                json_key_equals(Alert.labels, name, value, dialect=dialect))))
    if flt.actor:
        # Who approved (or rejected) a step, or who started it by hand.
        by_approval = select(Approval.id).where(Approval.execution_id == Execution.id,
                                                Approval.identity == flt.actor)
        query = query.where(exists(by_approval) | (Execution.started_by == flt.actor))
    return query


# The columns of ExecutionOut, read as plain rows: no ORM instances to build and read back.
_OUT_COLUMNS = [getattr(Execution, name) for name in ExecutionOut.model_fields]


async def list_executions(
    session: AsyncSession, flt: ExecutionFilter, *, cursor: str | None = None, limit: int = 50,
) -> ExecutionPage:
    """Executions newest first, one keyset page at a time.

    In two steps: the page's ids, ordered from an index that covers (created_at, id) for the
    filter, then the rows of those ids only. A label's executions are found through the
    alert_labels index: their order comes from ix_executions_id_created, so the thousand
    executions of a model cost index probes, not a thousand rows read and sorted.
    """
    newest_first = (Execution.created_at.desc(), Execution.id.desc())
    ids = filtered(select(Execution.id), flt, session.bind.dialect.name)
    if cursor:
        last_at, last_id = decode_cursor(cursor)
        ids = ids.where(tuple_(Execution.created_at, Execution.id) < tuple_(last_at, last_id))
    rows = (await session.execute(
        select(*_OUT_COLUMNS)
        .where(Execution.id.in_(ids.order_by(*newest_first).limit(limit + 1).scalar_subquery()))
        .order_by(*newest_first)
    )).mappings().all()
    next_cursor = (encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"])
                   if len(rows) > limit else None)
    return ExecutionPage.model_validate({"items": rows[:limit], "next_cursor": next_cursor})


async def get_execution(session: AsyncSession, execution_id: int) -> Execution:
    execution = await session.get(Execution, execution_id)
    if execution is None:
        raise NotFound(f"execution {execution_id} does not exist")
    return execution


async def execution_detail(session: AsyncSession, execution_id: int) -> ExecutionDetail:
    """The whole record: alerts, runbook version, steps, approvals and the timeline."""
    execution = await get_execution(session, execution_id)
    alerts = (await session.execute(
        select(Alert, ExecutionAlert.role).join(ExecutionAlert, ExecutionAlert.alert_id == Alert.id)
        .where(ExecutionAlert.execution_id == execution_id).order_by(ExecutionAlert.attached_at)
    )).all()
    steps = (await session.execute(
        select(StepRun).where(StepRun.execution_id == execution_id)
        .order_by(StepRun.kind.desc(), StepRun.position, StepRun.id)
    )).scalars().all()
    approvals = (await session.execute(
        select(Approval).where(Approval.execution_id == execution_id).order_by(Approval.id)
    )).scalars().all()
    events = (await session.execute(
        select(Event).where(Event.execution_id == execution_id).order_by(Event.id)
    )).scalars().all()
    version = (await session.execute(
        select(RunbookVersion).where(RunbookVersion.runbook_id == execution.runbook_id,
                                     RunbookVersion.version == execution.runbook_version)
    )).scalar_one_or_none()
    step_approvals: dict[int, list[ApprovalOut]] = {}
    for approval in approvals:
        step_approvals.setdefault(approval.step_run_id, []).append(ApprovalOut.of(approval))
    return ExecutionDetail(
        **ExecutionOut.of(execution).model_dump(),
        alerts=[AlertBrief.of_role(alert, role) for alert, role in alerts],
        runbook_content=version.content if version else None,
        steps=[StepOut.of(s, step_approvals.get(s.id, [])) for s in steps],
        approvals=[ApprovalOut.of(a) for a in approvals],
        timeline=[EventOut.of(e) for e in events],
    )
