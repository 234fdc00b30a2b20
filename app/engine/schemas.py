"""What the engine's API answers with: an execution as JSON (the history extends it)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel

from app.engine.models import Execution


class ExecutionOut(BaseModel):
    id: int
    runbook_id: str
    runbook_version: str
    target: str
    status: str
    status_reason: str | None
    params: dict[str, Any]
    dry_run: bool
    trigger: str  # alert | manual | rollback
    started_by: str | None
    # The execution a rollback started by hand undoes a step of.
    parent_id: int | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    alert_fired_at: dt.datetime | None
    alerts_resolved_at: dt.datetime | None
    cursor: str | None

    @classmethod
    def of(cls, execution: Execution) -> ExecutionOut:
        return cls.model_validate(execution, from_attributes=True)
