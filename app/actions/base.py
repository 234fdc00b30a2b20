"""The Action contract: a small class with a pydantic `Params` model and one async `run`.

An action never reads alert data directly. It receives parameters that the runbook rendered
in the sandbox and that its `Params` model validated. In a drill (`ctx.dry_run`) it must not
change anything, and its result says exactly what it would have done.

An action with a side effect also has a read-only `plan()`: before a risky step waits for
approval, it resolves symbolic inputs ("previous") into the concrete change and says it in one
line, the way `terraform plan` does. The approval covers that plan, and the engine asks again
just before the step runs: a plan that resolves differently voids the approvals. An action
without `plan()` (a third-party one, say) is planned as its rendered call.

An action that only reads says so with `read_only = True` (or, when that depends on its
parameters, a `reads_only(params)` method: http.request reads only with GET). In a drill
the engine runs a safe step for real only when its action reads only; every other step is
planned and never run, whatever the action's own dry-run handling does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from app.config import Settings
from app.outbound import OutboundHttp


class ActionFailed(Exception):
    """A step's action failed. The message says what to look at: which file, host or status."""

    def __init__(self, message: str, *, output: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.output = output or {}


@dataclass(frozen=True)
class Waits:
    """How long one run of an action waits by design, on top of its requests: an action that
    polls until a condition holds (`within`) and stays (`stable_for`). `at_least` is the
    shortest run that can succeed (the hold); `at_most` the longest it may wait."""

    at_most: float = 0.0
    at_least: float = 0.0


class ActionParams(BaseModel):
    """Base for every action's parameters: unknown keys are errors, caught by lint too."""

    # Every action's parameters model builds its validator when first used, not at import:
    # a process runs a few of the ~40 (0.6 MiB of idle memory, issue 17 target 9).
    model_config = ConfigDict(extra="forbid", defer_build=True)

    def waits(self) -> Waits:
        """The action's own waiting (most actions make their requests and return)."""
        return Waits()


@dataclass(frozen=True)
class ActionContext:
    """What an action may use besides its parameters."""

    settings: Settings
    http: OutboundHttp
    dry_run: bool = False
    execution_id: int | None = None
    step_id: str | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("runbookd.actions"))


@dataclass(frozen=True)
class ActionResult:
    """A finished action: a one-line summary for people, and a JSON output for later steps."""

    summary: str
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ActionPlan:
    """The concrete change a step will make: one line for people, the values for comparing.

    `resolved` holds what the action will act on once symbols are resolved (versions, URLs,
    argv); two plans are the same change when their `resolved` are equal.
    """

    summary: str
    resolved: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "resolved": self.resolved}

    @classmethod
    def of(cls, stored: dict[str, Any]) -> ActionPlan:
        return cls(summary=str(stored.get("summary", "")),
                   resolved=dict(stored.get("resolved") or {}))


def rendered_call(action_name: str, params: ActionParams | dict[str, Any]) -> ActionPlan:
    """The plan of an action that has no `plan()`: its call, as rendered."""
    values = (params.model_dump(mode="json", exclude_none=True, by_alias=True)
              if isinstance(params, BaseModel) else dict(params))
    shown = " ".join(f"{key}={json.dumps(value, ensure_ascii=False, default=str)}"
                     for key, value in sorted(values.items()))
    return ActionPlan(summary=f"{action_name} {shown}".strip(), resolved=values)


@runtime_checkable
class Plannable(Protocol):
    """An action that can say, without changing anything, what it would change."""

    async def plan(self, ctx: ActionContext, params: Any) -> ActionPlan: ...


def reads_only(action: object, params: ActionParams) -> bool:
    """Whether this call of `action` only reads: its `reads_only(params)` when it has one,
    else its `read_only` flag. Absent means no: a plug-in that says nothing is planned in a
    drill, never run."""
    decide = getattr(action, "reads_only", None)
    if callable(decide):
        return decide(params) is True
    return getattr(action, "read_only", False) is True


@runtime_checkable
class Action(Protocol):
    name: ClassVar[str]
    Params: ClassVar[type[ActionParams]]
    # Whether running it twice has the same effect as once; a step may override it.
    idempotent: ClassVar[bool]
    description: ClassVar[str]

    async def run(self, ctx: ActionContext, params: Any) -> ActionResult: ...
