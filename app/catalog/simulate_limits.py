"""The limits a simulation shows: the runbook's rate limits, concurrency and breaker, and
each step's budget with its key rendered. Pure; how much of each budget is spent now is
filled in by the engine, which reads the database (app/engine/simulate_plans.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.catalog.schema import RateLimit, Runbook, Step
from app.catalog.templating import render_string
from app.durations import format_duration


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class SimBudget(_Out):
    """One rate limit, `count` per `per`; `spent` and `next_allowed_at` come from the
    database (None when it was not read)."""

    count: int
    per: str
    spent: int | None = None
    # When the budget is spent: when the oldest run in the window leaves it.
    next_allowed_at: dt.datetime | None = None

    def describe(self) -> str:
        text = f"{self.count} per {self.per}"
        if self.spent is not None:
            text += f": {self.spent} spent"
            if self.next_allowed_at is not None:
                text += (f", next allowed at "
                         f"{self.next_allowed_at.isoformat(timespec='seconds')}")
        return text


class SimBreaker(_Out):
    """Pause the runbook after `failures` failed executions within `within`."""

    failures: int
    within: str
    # True: the engine's settings, as the runbook sets no breaker of its own.
    default: bool = False
    # Failed executions inside the window now (from the database).
    failed: int | None = None


class SimLimits(_Out):
    """The runbook's limits, and where they stand when the database was read."""

    # Executions per runbook and target.
    rate: list[SimBudget] = Field(default_factory=list)
    concurrent: int
    concurrent_scope: Literal["target", "runbook"]
    # Executions running now in that scope (from the database).
    active: int | None = None
    # None: the runbook sets none, and the engine's settings were not read.
    breaker: SimBreaker | None = None
    # What the limits would do to this alert now; None when the database was not read.
    verdict: str | None = None


class SimStepRate(_Out):
    """A step's own budget: its key (shared by every step with the same `rate_key`)."""

    key: str | None
    shared: bool
    budgets: list[SimBudget]
    # Why the key is not known, or how the engine will fall back.
    note: str | None = None


def limits_of(rb: Runbook) -> SimLimits:
    """The runbook's limits as it states them."""
    breaker = rb.limits.breaker
    return SimLimits(
        rate=_budgets(rb.limits.rate), concurrent=rb.limits.concurrent,
        concurrent_scope=rb.limits.concurrent_scope,
        breaker=SimBreaker(failures=breaker.failures, within=format_duration(breaker.within))
        if breaker else None)


def _budgets(limits: list[RateLimit]) -> list[SimBudget]:
    return [SimBudget(count=r.count, per=format_duration(r.per)) for r in limits]


def default_rate_key(runbook_id: str, step_id: str, target: str) -> str:
    """The budget of a step without `rate_key`: its own, per target (as the engine keys it)."""
    return f"{runbook_id}:{step_id}:{target}"


def step_rate(step: Step, rb: Runbook, context: dict[str, Any] | None,
              target: str | None) -> SimStepRate | None:
    """The step's budget with its key rendered as the engine will render it (the catalog
    lets a key see only params, so it is known before the execution starts)."""
    if not step.rate:
        return None
    out = SimStepRate(key=None, shared=step.rate_key is not None, budgets=_budgets(step.rate))
    if context is None or target is None:
        out.note = "the key needs valid parameters and a target"
        return out
    fallback = default_rate_key(rb.id, step.id, target)
    if step.rate_key is None:
        out.key = fallback
        return out
    try:
        key = render_string(step.rate_key, context)
    except Exception as exc:  # a placeholder in arithmetic raises TypeError, say
        out.key = fallback
        out.note = f"rate_key does not render ({exc}); the engine falls back to {fallback}"
        return out
    out.key = key
    return out
