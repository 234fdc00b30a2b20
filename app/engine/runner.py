"""Run one action: validate its parameters, apply the timeout, retry only if idempotent.

No database here: the executor records what this returns. Checks (preconditions and
verifications) are actions too; a check with `within` is re-run until it passes or time is up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import ValidationError

from app.actions.base import (
    ActionContext,
    ActionFailed,
    ActionPlan,
    ActionResult,
    Plannable,
    Waits,
    rendered_call,
)
from app.actions.registry import ActionRegistry, UnknownAction
from app.engine import states
from app.errors import describe_validation_errors
from app.outbound import HostNotAllowed

Status = Literal["succeeded", "failed", "timed_out"]


@dataclass(frozen=True)
class Outcome:
    status: Status
    summary: str
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status == states.STEP_SUCCEEDED


def step_hash(action: str, params: dict[str, Any], plan: ActionPlan | None = None) -> str:
    """sha256 of the action, its rendered parameters and (for a risky step) its plan: what an
    approval is bound to."""
    bound: dict[str, Any] = {"action": action, "params": params}
    if plan is not None:
        bound["plan"] = plan.as_dict()
    canonical = json.dumps(bound, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class PlanFailed(Exception):
    """The action could not say what it would change: the step cannot be approved."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


async def plan_action(registry: ActionRegistry, ctx: ActionContext, action_name: str,
                      params: dict[str, Any], *, timeout: float) -> ActionPlan:
    """The read-only plan of a step's action; PlanFailed says why there is none."""
    try:
        action = registry.get(action_name)
        validated = action.Params.model_validate(params)
    except UnknownAction as exc:
        raise PlanFailed(str(exc)) from None
    except ValidationError as exc:
        raise PlanFailed(_invalid(action_name, exc)) from None
    if not isinstance(action, Plannable):
        return rendered_call(action_name, validated)
    try:
        return await asyncio.wait_for(action.plan(ctx, validated), timeout)
    except TimeoutError:
        raise PlanFailed(f"planning {action_name} timed out after {timeout:g}s") from None
    except (ActionFailed, HostNotAllowed) as exc:
        raise PlanFailed(f"cannot plan {action_name}: {getattr(exc, 'message', exc)}") from None
    except Exception as exc:  # an action's bug must fail the step, not the executor
        raise PlanFailed(f"planning {action_name} raised {type(exc).__name__}: "
                         f"{str(exc)[:300]}") from None


def _invalid(action_name: str, exc: ValidationError) -> str:
    details = describe_validation_errors(list(exc.errors(include_url=False)))  # type: ignore[arg-type]
    return "invalid parameters for {}: {}".format(
        action_name, "; ".join(f"{d['field']}: {d['message']}" for d in details))


def bound_output(output: dict[str, Any], limit: int) -> dict[str, Any]:
    """Keep recorded outputs small: an oversized one is replaced by a truncated preview."""
    text = json.dumps(output, default=str)
    if len(text) <= limit:
        return json.loads(text)
    return {"truncated": True, "size": len(text), "preview": text[: max(limit - 100, 0)]}


async def run_action(
    registry: ActionRegistry, ctx: ActionContext, action_name: str, params: dict[str, Any], *,
    timeout: float, retries: int = 0, idempotent: bool = False, output_limit: int = 16_384,
) -> Outcome:
    """Run an action to an Outcome; never raises for the action's own failures."""
    started = time.perf_counter()
    try:
        action = registry.get(action_name)
        validated = action.Params.model_validate(params)
    except UnknownAction as exc:
        return Outcome("failed", str(exc), error=str(exc))
    except ValidationError as exc:
        message = _invalid(action_name, exc)
        return Outcome("failed", message, error=message)

    # Only an idempotent action may run again after a failure: a retry of anything else
    # could repeat a side effect that did happen before the error was seen.
    attempts = retries + 1 if idempotent else 1
    attempt_count = 0
    # Imported on the first step a process runs, not at start-up: tenacity is 0.4 MiB of
    # idle memory (issue 17); after that, the import is a lookup in sys.modules.
    from tenacity import (
        AsyncRetrying,
        retry_if_exception_type,
        stop_after_attempt,
        wait_exponential,
    )

    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, min=0.2, max=30),
            retry=retry_if_exception_type((ActionFailed, TimeoutError, OSError)),
            reraise=True,
        ):
            with attempt:
                attempt_count += 1
                result: ActionResult = await asyncio.wait_for(action.run(ctx, validated),
                                                              timeout)
    except TimeoutError:
        message = f"{action_name} timed out after {timeout:g}s"
        return Outcome("timed_out", message, error=message, attempts=attempt_count,
                       duration_ms=_ms(started))
    except ActionFailed as exc:
        return Outcome("failed", exc.message, bound_output(exc.output, output_limit),
                       error=exc.message, attempts=attempt_count, duration_ms=_ms(started))
    except HostNotAllowed as exc:
        return Outcome("failed", str(exc), error=str(exc), attempts=attempt_count,
                       duration_ms=_ms(started))
    except Exception as exc:  # an action's bug must fail the step, not the executor
        message = f"{action_name} raised {type(exc).__name__}: {str(exc)[:300]}"
        return Outcome("failed", message, error=message, attempts=attempt_count,
                       duration_ms=_ms(started))
    return Outcome("succeeded", result.summary, bound_output(result.output, output_limit),
                   attempts=attempt_count, duration_ms=_ms(started))


async def run_check(
    registry: ActionRegistry, ctx: ActionContext, action_name: str, params: dict[str, Any], *,
    within: float | None, timeout: float, output_limit: int = 16_384,
) -> Outcome:
    """Run a check once, or again until it passes within `within` seconds.

    `timeout` bounds each single request. An action that waits by design (a query that must
    hold for `stable_for`) gets its own waiting time on top, and `within`, when set, bounds
    the whole loop: cutting each attempt at `timeout` made a 5-minute hold impossible.
    """
    waits = waits_of(registry, action_name, params)
    bound = within if within is not None else waits.at_most
    started = time.monotonic()
    deadline = started + bound
    interval = min(5.0, max(bound / 10, 0.25))
    while True:
        remaining = max(deadline - time.monotonic(), 0.0)
        outcome = await run_action(registry, ctx, action_name, params,
                                   timeout=min(waits.at_most, remaining) + timeout,
                                   idempotent=True, output_limit=output_limit)
        if outcome.ok or time.monotonic() + interval > deadline:
            if outcome.status == "timed_out" and waits.at_most > remaining:
                message = (f"{action_name} did not pass within {bound:g}s "
                           f"(cut while it was still waiting)")
                return replace(outcome, summary=message, error=message)
            return outcome
        await asyncio.sleep(interval)


def waits_of(registry: ActionRegistry, action_name: str, params: dict[str, Any]) -> Waits:
    """The action's own waiting for these parameters; none when they do not validate (the
    run then fails with its own message)."""
    try:
        return registry.get(action_name).Params.model_validate(params).waits()
    except (UnknownAction, ValidationError):
        return Waits()


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
