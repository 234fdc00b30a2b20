"""Response models of the history API (also used by the web pages and the CLI)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, computed_field

from app.engine.models import Approval, StepRun
from app.engine.schemas import ExecutionOut
from app.events import Event
from app.intake.models import Alert
from app.intake.queries import AlertOut


class ExecutionPage(BaseModel):
    items: list[ExecutionOut]
    next_cursor: str | None


class AlertBrief(AlertOut):
    """An alert of an execution, and whether it started it or joined it."""

    role: str

    @classmethod
    def of_role(cls, alert: Alert, role: str) -> AlertBrief:
        return cls(**AlertOut.of(alert).model_dump(), role=role)


class ApprovalOut(BaseModel):
    id: int
    step_run_id: int
    identity: str
    decision: str
    comment: str
    step_hash: str
    channel: str
    source_addr: str | None
    created_at: dt.datetime
    voided_at: dt.datetime | None
    void_reason: str | None

    @classmethod
    def of(cls, approval: Approval) -> ApprovalOut:
        return cls.model_validate(approval, from_attributes=True)


class StepOut(BaseModel):
    id: int
    step_id: str
    kind: str
    position: int
    title: str
    action: str
    risky: bool
    idempotent: bool
    status: str
    attempts: int
    params: dict[str, Any] | None
    step_hash: str | None
    # The concrete change a risky step makes ({"summary", "resolved"}); its approvals cover it.
    plan: dict[str, Any] | None = None
    summary: str | None
    output: dict[str, Any] | None
    error: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_ms: int | None
    awaiting_since: dt.datetime | None
    approval_expires_at: dt.datetime | None
    approvals: list[ApprovalOut] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ref(self) -> str:
        """How the API, the CLI and pages name this run: the step id, or `<step>.rollback`."""
        return self.step_id if self.kind == "step" else f"{self.step_id}.{self.kind}"

    @classmethod
    def of(cls, step: StepRun, approvals: list[ApprovalOut]) -> StepOut:
        base = cls.model_validate(step, from_attributes=True)
        return base.model_copy(update={"approvals": approvals})


class EventOut(BaseModel):
    id: int
    created_at: dt.datetime
    kind: str
    entity: str
    execution_id: int | None
    step_run_id: int | None = None  # names a rollback's events `<step>.rollback`
    step_id: str | None
    from_state: str | None
    to_state: str | None
    actor: str
    source_addr: str | None
    reason: str
    data: dict[str, Any] | None

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls.model_validate(event, from_attributes=True)


class ExecutionDetail(ExecutionOut):
    alerts: list[AlertBrief]
    runbook_content: dict[str, Any] | None
    steps: list[StepOut]
    approvals: list[ApprovalOut]
    timeline: list[EventOut]
