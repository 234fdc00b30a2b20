"""The runbook and mapping file formats, as strict pydantic models (unknown keys are errors).

A runbook is both the document an on-call engineer reads and the program the executor runs,
so the document fields (summary, triage, rationale, objectives, postmortem) are required.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.catalog.cron import CronError, parse_cron
from app.durations import Duration

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
Slug = Annotated[str, Field(pattern=SLUG)]
Role = Literal["viewer", "responder", "approver", "admin"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ParamSpec(Strict):
    """A typed input taken from the alert, validated before any template sees it."""

    from_: str = Field(alias="from", pattern=r"^(labels|annotations)\.[A-Za-z_][A-Za-z0-9_]*$")
    type: Literal["str", "int", "float", "bool"] = "str"
    pattern: str | None = None
    allowed: list[str | int | float | bool] | None = None
    minimum: float | None = None
    maximum: float | None = None
    default: str | int | float | bool | None = None
    max_length: int = Field(default=256, ge=1, le=4096)
    description: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _validated(self) -> ParamSpec:
        # Alert data is hostile: a free-text parameter would carry it straight into actions.
        if self.type == "str" and self.pattern is None and self.allowed is None:
            raise ValueError("a str parameter needs a `pattern` or an `allowed` list")
        return self


class ApprovalSpec(Strict):
    """How many distinct approvers a risky step needs, and who counts."""

    count: int = Field(default=1, ge=1, le=10)
    roles: list[Role] = Field(default_factory=lambda: ["approver"])
    identities: list[str] = Field(default_factory=list)


class CheckSpec(Strict):
    """A precondition or a verification: an action that must succeed."""

    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    within: Duration | None = None
    title: str = ""


class Goto(Strict):
    goto: Slug


OnFailure = Literal["stop", "continue", "rollback"] | Goto
# After a step succeeds: the next step, the end (the execution succeeds), or a later step
# (staged promotion: a watch that passes goes to `promote`, one that fails to `retire`).
OnSuccess = Literal["next", "end"] | Goto


class RollbackSpec(Strict):
    """The step that undoes a step: when `on_failure: rollback` fires, or started by hand.

    Undoing a risky step is a risky change too, so it needs the step's approvers unless the
    runbook says `auto: true` (an undo that is always safe, such as pointing an alias back)."""

    title: str
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: Duration | None = None
    auto: bool = False


class RateLimit(Strict):
    count: int = Field(ge=1)
    per: Duration


OnResolve = Literal["cancel", "continue"]


class Step(Strict):
    id: Slug
    title: str = Field(min_length=1)
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    risk: Literal["safe", "risky"] = "safe"
    approvals: ApprovalSpec | None = None
    approval_timeout: Duration | None = None
    idempotent: bool | None = None
    timeout: Duration | None = None
    retries: int = Field(default=0, ge=0, le=10)
    verify: CheckSpec | None = None
    on_failure: OnFailure = "stop"
    on_success: OnSuccess = "next"
    rollback: RollbackSpec | None = None
    # While the execution is at this step, this decides what the resolve of its alerts does
    # (None: the runbook's `on_resolve`). A fix that works resolves its own alert, so a
    # follow-up such as retraining says `continue` to survive it.
    on_resolve: OnResolve | None = None
    # A budget on this step alone: when it is spent the step is skipped with its reason and
    # the runbook goes on. Steps that share `rate_key` (a template over params, e.g.
    # "retrain:{{ params.model }}") share one budget, across runbooks; without one the key is
    # the runbook, the step and the target.
    rate: list[RateLimit] = Field(default_factory=list)
    rate_key: str | None = Field(default=None, min_length=1, max_length=256)
    description: str = ""

    @model_validator(mode="after")
    def _keyed_rate(self) -> Step:
        if self.rate_key is not None and not self.rate:
            raise ValueError("rate_key names a shared budget, but the step has no `rate`")
        return self

    @field_validator("approvals", mode="before")
    @classmethod
    def _count_shorthand(cls, value: Any) -> Any:
        # `approvals: 1` means one approver with the approver (or admin) role.
        if isinstance(value, int) and not isinstance(value, bool):
            return {"count": value}
        return value


class TriageItem(Strict):
    question: str
    check: str = Field(description="a step id, or a dashboard link")
    points_to: Literal["compute", "data", "model"] | None = None
    then: str = ""


Channel = Annotated[str, Field(pattern=r"^(slack|pagerduty|webhook):[A-Za-z0-9_.#-]+$")]


class Breaker(Strict):
    """Pause the runbook after `failures` failed executions inside `within`."""

    failures: int = Field(default=3, ge=1, le=100)
    within: Duration = dt.timedelta(hours=1)


class StormBrake(Strict):
    """Hold new executions once more than `targets` distinct targets started within
    `within`: many targets failing at once points at a shared cause (the feature store, the
    cluster, a bad deploy), and automation that rolls back 40 models makes it bigger."""

    targets: int = Field(ge=1, le=10000)
    within: Duration
    # Who is paged, once, when the brake engages (default: the runbook's escalation tiers
    # and its `on_failure_notify`).
    notify: list[Channel] = Field(default_factory=list)

    @field_validator("within")
    @classmethod
    def _some_time(cls, within: dt.timedelta) -> dt.timedelta:
        if within <= dt.timedelta(0):
            raise ValueError("a brake counts targets within a window: give it a duration "
                             "above zero, such as 10m")
        return within


class Limits(Strict):
    rate: list[RateLimit] = Field(default_factory=list)
    # How many executions may run at once: per target (one model waiting for approval does
    # not hold up another), or across every target of the runbook.
    concurrent: int = Field(default=1, ge=1)
    concurrent_scope: Literal["target", "runbook"] = "target"
    # None: the engine's defaults (settings) apply.
    breaker: Breaker | None = None
    # This runbook's own storm brake, counted over its executions only (the mappings file's
    # top-level `brake:` counts every runbook's).
    brake: StormBrake | None = None


class DrillSpec(Strict):
    """When a drill of the runbook is due (`every` a duration, or a five-field UTC `cron`),
    and the params it runs with: a drill reads the real systems, so it needs a real model."""

    every: Duration | None = None
    cron: str | None = Field(default=None, max_length=128)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("every")
    @classmethod
    def _often_enough(cls, every: dt.timedelta | None) -> dt.timedelta | None:
        if every is not None and every < dt.timedelta(minutes=1):
            raise ValueError("a drill every less than a minute would never stop; give a "
                             "duration of at least 1m, such as 7d")
        return every

    @field_validator("cron")
    @classmethod
    def _parses(cls, cron: str | None) -> str | None:
        if cron is not None:
            try:
                parse_cron(cron)
            except CronError as exc:
                raise ValueError(str(exc)) from None
        return cron

    @model_validator(mode="after")
    def _one_schedule(self) -> DrillSpec:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a drill needs exactly one of `every` (like 7d) or `cron` (like "
                             "'0 6 * * 1')")
        return self


class Objectives(Strict):
    time_to_diagnose: Duration
    time_to_restore: Duration


class EscalationTier(Strict):
    after: Duration
    notify: list[Channel]


class Runbook(Strict):
    id: Slug
    title: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    reviewers: list[str] = Field(min_length=1)
    reviewed_at: dt.date
    review_every: Duration
    severity: Literal["critical", "high", "warning", "info"]
    summary: str = Field(min_length=1)
    triage: list[TriageItem] = Field(min_length=1)
    rationale: str = Field(min_length=1)
    objectives: Objectives
    params: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")], ParamSpec] = Field(
        default_factory=dict)
    target: str = Field(min_length=1)
    limits: Limits = Field(default_factory=Limits)
    preconditions: list[CheckSpec] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    escalation: list[EscalationTier] = Field(default_factory=list)
    # Who hears when an execution fails, needs attention or is rate limited, beside the
    # first tier: a failed automatic rollback of a critical model must page someone.
    on_failure_notify: list[Channel] = Field(default_factory=list)
    on_resolve: OnResolve = "cancel"
    postmortem: str = Field(min_length=1)
    dashboards: dict[str, str] = Field(default_factory=dict)
    # A scheduled drill: the read-only steps run for real, the others are only planned.
    drill: DrillSpec | None = None

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def step_index(self, step_id: str) -> int:
        return next(i for i, s in enumerate(self.steps) if s.id == step_id)

    def on_resolve_at(self, step_id: str | None) -> tuple[OnResolve, str]:
        """What the resolve of every alert does while the execution is at `step_id` (None:
        not started), and who says so."""
        step = next((s for s in self.steps if s.id == step_id), None) if step_id else \
            self.steps[0]
        if step is not None and step.on_resolve is not None:
            return step.on_resolve, f"step {step.id}"
        return self.on_resolve, "the runbook"


class Mapping(Strict):
    name: str = Field(min_length=1)
    matchers: list[str] | str
    runbook: Slug
    continue_: bool = Field(default=False, alias="continue")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)


class MappingsFile(Strict):
    mappings: list[Mapping]
    # The global storm brake: distinct targets counted over every runbook's executions.
    brake: StormBrake | None = None
