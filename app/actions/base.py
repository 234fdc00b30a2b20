"""The Action contract: a small class with a pydantic `Params` model and one async `run`.

An action never reads alert data directly. It receives parameters that the runbook rendered
in the sandbox and that its `Params` model validated. In a drill (`ctx.dry_run`) it must not
change anything, and its result says exactly what it would have done.
"""

from __future__ import annotations

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


class ActionParams(BaseModel):
    """Base for every action's parameters: unknown keys are errors, caught by lint too."""

    model_config = ConfigDict(extra="forbid")


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


@runtime_checkable
class Action(Protocol):
    name: ClassVar[str]
    Params: ClassVar[type[ActionParams]]
    # Whether running it twice has the same effect as once; a step may override it.
    idempotent: ClassVar[bool]
    description: ClassVar[str]

    async def run(self, ctx: ActionContext, params: Any) -> ActionResult: ...
