"""The engine's drill guard, on its own: in a drill only a safe action that declares itself
read-only runs; every other call is planned, and its run() is never called."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from app.actions.base import ActionContext, ActionParams, ActionPlan, ActionResult
from app.actions.registry import ActionRegistry
from app.engine.drills import drill_action, read_only_call
from tests.support.action_ctx import make_ctx


class Params(ActionParams):
    value: int = 1


class Recorder:
    """An action whose run() ignores ctx.dry_run and records that it ran."""

    name: ClassVar[str] = "test.careless"
    Params = Params
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "records every run"
    ran: ClassVar[list[bool]] = []

    async def run(self, ctx: ActionContext, params: Params) -> ActionResult:
        self.ran.append(ctx.dry_run)
        return ActionResult("changed something", {"value": params.value})


class Reader(Recorder):
    name: ClassVar[str] = "test.reader"
    read_only: ClassVar[bool] = True


class Planner(Recorder):
    name: ClassVar[str] = "test.planner"

    async def plan(self, ctx: ActionContext, params: Params) -> ActionPlan:
        if params.value < 0:
            raise ValueError("no such thing")
        return ActionPlan(summary=f"set to {params.value}", resolved={"value": params.value})


class ByParams(Recorder):
    name: ClassVar[str] = "test.by_params"

    def reads_only(self, params: Params) -> bool:
        return params.value == 0


@pytest.fixture
def registry() -> ActionRegistry:
    Recorder.ran.clear()
    found = ActionRegistry()
    for action in (Recorder(), Reader(), Planner(), ByParams()):
        found.register(action)
    return found


async def drill(registry: ActionRegistry, name: str, *, risky: bool = False,
                **params: Any):
    return await drill_action(registry, make_ctx(dry_run=True), name, params, risky=risky,
                              timeout=5, output_limit=4096)


async def test_an_action_that_says_nothing_is_planned_never_run(registry):
    outcome = await drill(registry, "test.careless", value=3)
    assert Recorder.ran == []
    assert outcome.ok and outcome.output["drill"] == "planned"
    assert outcome.summary == "drill, planned only: test.careless value=3"


async def test_a_safe_read_runs_and_a_risky_one_is_planned(registry):
    ran = await drill(registry, "test.reader", value=2)
    planned = await drill(registry, "test.reader", risky=True, value=2)
    assert ran.summary == "changed something" and "drill" not in ran.output
    assert planned.output["drill"] == "planned"
    assert Recorder.ran == [True]  # once, with the drill's context


async def test_a_plan_stands_in_for_the_output_and_a_failed_plan_is_a_problem(registry):
    planned = await drill(registry, "test.planner", value=5)
    failed = await drill(registry, "test.planner", value=-1)
    unknown = await drill(registry, "test.gone")
    invalid = await drill(registry, "test.planner", value="many")
    assert planned.output["value"] == 5 and planned.summary == "drill, planned only: set to 5"
    assert not failed.ok and "no such thing" in failed.error
    assert not unknown.ok and "unknown action 'test.gone'" in unknown.error
    assert not invalid.ok and "invalid parameters for test.planner" in invalid.error
    assert Recorder.ran == []


async def test_reads_only_may_depend_on_the_params(registry):
    assert read_only_call(registry, "test.by_params", {"value": 0})
    assert not read_only_call(registry, "test.by_params", {"value": 1})
    assert not read_only_call(registry, "test.by_params", {"value": "x"})
    await drill(registry, "test.by_params", value=1)
    assert Recorder.ran == []
    await drill(registry, "test.by_params", value=0)
    assert Recorder.ran == [True]


async def test_the_guard_refuses_a_context_that_is_not_a_drill(registry):
    with pytest.raises(ValueError, match="drill"):
        await drill_action(registry, make_ctx(), "test.reader", {}, risky=False, timeout=5,
                           output_limit=4096)


def test_the_shipped_read_only_actions():
    from app.actions.registry import default_registry

    shipped = default_registry()
    reads = {name for name in shipped.names()
             if getattr(shipped.get(name), "read_only", False) is True}
    assert reads == {"prometheus.query", "registry.get_alias", "registry.list_versions",
                     "registry.verify", "mlflow.get_alias", "mlflow.verify_version",
                     "airflow.wait", "artifact.verify", "kubernetes.rollout_status",
                     "argo.rollout_status", "wait"}
    assert read_only_call(shipped, "http.request", {"url": "http://h/x", "method": "GET"})
    assert not read_only_call(shipped, "http.request", {"url": "http://h/x", "method": "POST"})
