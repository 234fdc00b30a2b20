"""`airflow.*`: trigger a DAG run, wait for it, clear its failed tasks, pause or unpause a DAG,
over Airflow's REST API (v2 for Airflow 3, v1 for Airflow 2; see `airflow_client`).

A repeat finds its own run. `airflow.trigger` names the run after the execution and the step
run (`runbookd-<execution id>-<step run id>`, unless the step names its `dag_run_id`), so a
retried or resumed step meets Airflow's 409 for that id, checks that the run holds the same
conf, and attaches to it instead of starting a second one. `airflow.wait` reads only; the
step fails when the run ends `failed`, and when it is still going at the wait's `timeout`.

Plans (read-only) resolve against the server with the calls `run` makes, e.g.
"trigger retrain_model with conf {"model": "fraud-v3"} as run runbookd-42-retrain on
airflow.ml.internal"; `clear_failed` lists the task instances that Airflow itself says it
would clear (its clear endpoint with `dry_run: true`). In a drill, the actions make those same
reads and change nothing.

`airflow.wait` and `airflow.clear_failed` take `dag_run_id: "@latest"` for the DAG's newest run
(a drill has no failed run to name), resolved when the step is planned and named in the plan:
"run scheduled__2026-11-30T06:00:00+00:00 (the newest of retrain_model)". A DAG with no runs
fails the step.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, field_validator

from app.actions._support import json_sha256
from app.actions.airflow_client import (
    RUN_ID,
    TERMINAL,
    Airflow,
    AirflowParams,
    AirflowUnavailable,
    RunParams,
    conf_shown,
    run_named,
    segment,
)
from app.actions.base import ActionContext, ActionFailed, ActionPlan, ActionResult, Waits
from app.durations import Duration, format_duration

CONF_LIMIT = 16_384
MAX_WAIT = dt.timedelta(days=1)


class TriggerParams(AirflowParams):
    conf: dict[str, Any] = Field(default_factory=dict)
    # Default: `runbookd-<execution id>-<step id>`, which a repeat of the step finds again.
    dag_run_id: str | None = Field(default=None, pattern=RUN_ID)

    @field_validator("conf")
    @classmethod
    def _small_conf(cls, conf: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(conf, default=str))
        if size > CONF_LIMIT:
            raise ValueError(f"conf is {size} bytes as JSON; at most {CONF_LIMIT} are sent")
        return conf


def _run_id(ctx: ActionContext, params: TriggerParams) -> str:
    if params.dag_run_id:
        return params.dag_run_id
    if ctx.execution_id is None or not ctx.step_id:
        raise ActionFailed("airflow.trigger outside an execution needs `dag_run_id`")
    return f"runbookd-{ctx.execution_id}-{ctx.step_id}"


class AirflowTrigger:
    name: ClassVar[str] = "airflow.trigger"
    Params = TriggerParams
    # A repeat meets the same run id (409) and attaches to that run.
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Triggers a DAG run with a conf, as run runbookd-<execution id>-<step run id> (or "
        "`dag_run_id`); a repeat of the "
        "step attaches to that run instead of starting another."
    )

    async def plan(self, ctx: ActionContext, params: TriggerParams) -> ActionPlan:
        """The run as it would start now: the DAG must exist; an existing run is attached."""
        api, run_id, dag, existing = await self._look(ctx, params)
        resolved = {"airflow": api.host, "api": api.api, "dag_id": params.dag_id,
                    "dag_run_id": run_id, "conf_sha256": json_sha256(params.conf)}
        if existing is not None:
            return ActionPlan(summary=(
                f"run {run_id} of {params.dag_id} already exists on {api.host} (state "
                f"{existing.get('state')}): attach to it, trigger nothing"), resolved=resolved)
        return ActionPlan(summary=(
            f"trigger {params.dag_id} with conf {conf_shown(params.conf)} as run {run_id} on "
            f"{api.host}{_paused_note(dag)}"), resolved=resolved)

    async def run(self, ctx: ActionContext, params: TriggerParams) -> ActionResult:
        api, run_id, dag, existing = await self._look(ctx, params)
        output: dict[str, Any] = {"dag_id": params.dag_id, "dag_run_id": run_id,
                                  "link": api.run_link(params.dag_id, run_id),
                                  "airflow": api.host, "dag_paused": bool(dag.get("is_paused"))}
        described = f"run {run_id} of {params.dag_id} on {api.host}"
        if existing is not None:
            _same_conf(existing, params.conf, described)
            return ActionResult(f"attached to {described} (state {existing.get('state')})",
                                {**output, "state": existing.get("state"), "attached": True})
        if ctx.dry_run:
            return ActionResult(
                f"would trigger {params.dag_id} with conf {conf_shown(params.conf)} as run "
                f"{run_id} on {api.host}{_paused_note(dag)}",
                {**output, "state": None, "attached": False, "triggered": False})
        doing = f"triggering {params.dag_id}"
        status, found = await api.call("POST", f"dags/{segment(params.dag_id)}/dagRuns",
                                       doing=doing, body=api.trigger_body(run_id, params.conf),
                                       accept=(200, 409))
        if status == 409:
            # Created since the look above (a concurrent replica of this very step).
            found = await api.require_run(params.dag_id, run_id, doing=doing)
            _same_conf(found, params.conf, described)
            return ActionResult(f"attached to {described} (state {found.get('state')})",
                                {**output, "state": found.get("state"), "attached": True})
        return ActionResult(f"triggered {described} (state {found.get('state')})"
                            f"{_paused_note(dag)}",
                            {**output, "state": found.get("state"), "attached": False,
                             "triggered": True})

    @staticmethod
    async def _look(ctx: ActionContext, params: TriggerParams,
                    ) -> tuple[Airflow, str, dict[str, Any], dict[str, Any] | None]:
        """Reads only: the client, the run id, the DAG, and the run if it exists already."""
        api = Airflow(ctx, params)
        run_id = _run_id(ctx, params)
        doing = f"airflow.trigger {params.dag_id}"
        api.check_host(doing)
        dag = await api.get_dag(params.dag_id, doing=doing)
        existing = await api.get_run(params.dag_id, run_id, doing=doing)
        return api, run_id, dag, existing


def _paused_note(dag: dict[str, Any]) -> str:
    return (" (the DAG is paused: the run stays queued until it is unpaused)"
            if dag.get("is_paused") else "")


def _same_conf(found: dict[str, Any], conf: dict[str, Any], described: str) -> None:
    """Attach only to the run this step started: same id is not enough if the conf differs."""
    if (found.get("conf") or {}) != conf:
        raise ActionFailed(f"{described} already exists with a different conf "
                           f"({conf_shown(found.get('conf') or {})}, this step sends "
                           f"{conf_shown(conf)}): it is not this step's run; give the step "
                           "a `dag_run_id` of its own")


class WaitParams(RunParams):
    interval: Duration = dt.timedelta(seconds=10)
    timeout: Duration = dt.timedelta(hours=1)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: dt.timedelta) -> dt.timedelta:
        if value.total_seconds() < 0.2:
            raise ValueError("interval must be at least 200ms")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: dt.timedelta) -> dt.timedelta:
        if not dt.timedelta(0) < value <= MAX_WAIT:
            raise ValueError(f"timeout must be more than 0s and at most "
                             f"{format_duration(MAX_WAIT)}")
        return value

    def waits(self) -> Waits:
        # The last read comes at most one interval after the timeout.
        return Waits(at_most=self.timeout.total_seconds() + self.interval.total_seconds())


class AirflowWait:
    name: ClassVar[str] = "airflow.wait"
    Params = WaitParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = (
        "Waits until a DAG run ends (reads only); the step fails when the run fails, or is "
        "still going after `timeout`. `dag_run_id: \"@latest\"` is the DAG's newest run."
    )

    async def run(self, ctx: ActionContext, params: WaitParams) -> ActionResult:
        api = Airflow(ctx, params)
        doing = f"airflow.wait for run {params.dag_run_id} of {params.dag_id}"
        api.check_host(doing)
        run_id = await api.resolve_run(params.dag_id, params.dag_run_id, doing=doing)
        described = (f"{run_named(params.dag_id, run_id, newest=run_id != params.dag_run_id)}"
                     f" on {api.host}")
        output: dict[str, Any] = {"dag_id": params.dag_id, "dag_run_id": run_id,
                                  "link": api.run_link(params.dag_id, run_id)}
        if ctx.dry_run:
            # A drill reads once: the run a drilled trigger would start does not exist.
            found = await api.get_run(params.dag_id, run_id, doing=doing)
            now = (f"now {found.get('state')}" if found else
                   "it does not exist (a drill triggers nothing)")
            return ActionResult(
                f"dry run (read-only, read once): would wait up to "
                f"{format_duration(params.timeout)} for {described} to end; {now}",
                {**output, "state": found.get("state") if found else None})
        started = time.monotonic()
        limit = params.timeout.total_seconds()
        reads, state, last_error = 0, None, None
        while True:
            reads += 1
            try:
                found = await api.require_run(params.dag_id, run_id, doing=doing)
                state, last_error = found.get("state"), None
            except AirflowUnavailable as exc:
                # Airflow restarting or briefly unreachable: keep reading while time remains.
                last_error = exc
            if state in TERMINAL:
                break
            if time.monotonic() - started >= limit:
                waited = format_duration(dt.timedelta(seconds=round(time.monotonic() - started,
                                                                    3)))
                if last_error is not None and state is None:
                    raise ActionFailed(f"{last_error.message} (for {waited}, {reads} reads)",
                                       output={**output, "state": None, "timed_out": True})
                raise ActionFailed(
                    f"{described} is still {state} after {waited} (timeout "
                    f"{format_duration(params.timeout)}, {reads} reads)",
                    output={**output, "state": state, "timed_out": True})
            await asyncio.sleep(min(params.interval.total_seconds(),
                                    max(limit - (time.monotonic() - started), 0.0)))
        output = {**output, "state": state, "reads": reads}
        if state == "failed":
            failed = await api.failed_tasks(params.dag_id, run_id, doing=doing)
            listed = f": failed tasks {', '.join(failed)}" if failed else ""
            raise ActionFailed(f"{described} ended failed{listed}",
                               output={**output, "failed_tasks": failed})
        return ActionResult(f"{described} ended {state} (after {reads} "
                            f"read{'s' if reads != 1 else ''})", output)


class AirflowClearFailed:
    name: ClassVar[str] = "airflow.clear_failed"
    Params = RunParams
    # A repeat after the rerun failed again would re-run the tasks a second time.
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = (
        "Clears the failed task instances of one DAG run, so that Airflow runs them again "
        "(the run goes back to queued). `dag_run_id: \"@latest\"` is the DAG's newest run, "
        "named in the plan."
    )

    async def plan(self, ctx: ActionContext, params: RunParams) -> ActionPlan:
        """Airflow's own answer to "what would be cleared" (its clear with dry_run: true). The
        run "@latest" names is resolved here, so the approval covers that run: a newer run by
        the time the step runs is a different plan, which voids the approval."""
        api, run, tasks = await self._would_clear(ctx, params)
        return ActionPlan(summary=_clear_line(run, tasks), resolved={
            "airflow": api.host, "dag_id": params.dag_id, "dag_run_id": run.run_id,
            "tasks": tasks})

    async def run(self, ctx: ActionContext, params: RunParams) -> ActionResult:
        api, run, tasks = await self._would_clear(ctx, params)
        output: dict[str, Any] = {"dag_id": params.dag_id, "dag_run_id": run.run_id,
                                  "link": api.run_link(params.dag_id, run.run_id)}
        if not tasks:
            return ActionResult(_clear_line(run, tasks), {**output, "cleared": []})
        if ctx.dry_run:
            return ActionResult(f"would {_clear_line(run, tasks)}",
                                {**output, "cleared": [], "would_clear": tasks})
        cleared = await api.clear_failed(params.dag_id, run.run_id, dry_run=False,
                                         doing=f"clearing failed tasks of run "
                                               f"{run.run_id} of {params.dag_id}")
        return ActionResult(f"cleared {len(cleared)} failed task instance(s) of "
                            f"{run.described}: {', '.join(cleared)}; the run goes back to "
                            "queued", {**output, "cleared": cleared})

    @staticmethod
    async def _would_clear(ctx: ActionContext, params: RunParams,
                           ) -> tuple[Airflow, _Run, list[str]]:
        api = Airflow(ctx, params)
        doing = f"airflow.clear_failed on run {params.dag_run_id} of {params.dag_id}"
        api.check_host(doing)
        run_id = await api.resolve_run(params.dag_id, params.dag_run_id, doing=doing)
        await api.require_run(params.dag_id, run_id, doing=doing)
        run = _Run(run_id, f"{run_named(params.dag_id, run_id, newest=run_id != params.dag_run_id)}"
                           f" on {api.host}")
        return api, run, await api.clear_failed(params.dag_id, run_id, dry_run=True,
                                                doing=doing)


@dataclass(frozen=True)
class _Run:
    """The run a step acts on, once "@latest" is resolved, and how the summaries name it."""

    run_id: str
    described: str


def _clear_line(run: _Run, tasks: list[str]) -> str:
    if not tasks:
        return f"{run.described} has no failed task instances (no change)"
    return (f"clear {len(tasks)} failed task instance(s) of {run.described}: "
            f"{', '.join(tasks)} (the run goes back to queued)")


class _SetPaused:
    """`airflow.pause` and `airflow.unpause`: PATCH the DAG's is_paused."""

    Params = AirflowParams
    idempotent: ClassVar[bool] = True
    paused: ClassVar[bool]

    async def plan(self, ctx: ActionContext, params: AirflowParams) -> ActionPlan:
        """The DAG's state now and after."""
        api, current = await self._current(ctx, params)
        return ActionPlan(summary=self._line(api, params, current), resolved={
            "airflow": api.host, "dag_id": params.dag_id, "from": current, "to": self.paused})

    async def run(self, ctx: ActionContext, params: AirflowParams) -> ActionResult:
        api, current = await self._current(ctx, params)
        output = {"dag_id": params.dag_id, "is_paused": current, "changed": False}
        if current == self.paused:
            return ActionResult(self._line(api, params, current), output)
        if ctx.dry_run:
            return ActionResult(f"would {self._line(api, params, current)}", output)
        verb = "pause" if self.paused else "unpause"
        _, found = await api.call("PATCH", f"dags/{segment(params.dag_id)}",
                                  body={"is_paused": self.paused},
                                  doing=f"airflow.{verb} {params.dag_id}")
        now = bool(found.get("is_paused")) if isinstance(found, dict) else self.paused
        if now != self.paused:
            raise ActionFailed(f"airflow.{verb} {params.dag_id}: Airflow at {api.host} "
                               f"answered 200 but the DAG is_paused is still {now}")
        return ActionResult(f"{verb}d DAG {params.dag_id} on {api.host}",
                            {**output, "is_paused": now, "changed": True})

    def _line(self, api: Airflow, params: AirflowParams, current: bool) -> str:
        def shown(paused: bool) -> str:
            return "paused" if paused else "unpaused"

        if current == self.paused:
            return f"DAG {params.dag_id} on {api.host} is already {shown(current)} (no change)"
        verb = "pause" if self.paused else "unpause"
        return (f"{verb} DAG {params.dag_id} on {api.host}: {shown(current)} → "
                f"{shown(self.paused)}")

    @staticmethod
    async def _current(ctx: ActionContext, params: AirflowParams) -> tuple[Airflow, bool]:
        api = Airflow(ctx, params)
        doing = f"reading DAG {params.dag_id}"
        api.check_host(doing)
        dag = await api.get_dag(params.dag_id, doing=doing)
        return api, bool(dag.get("is_paused"))


class AirflowPause(_SetPaused):
    name: ClassVar[str] = "airflow.pause"
    paused: ClassVar[bool] = True
    description: ClassVar[str] = ("Pauses a DAG: the scheduler starts no new run, and runs "
                                  "triggered meanwhile stay queued.")


class AirflowUnpause(_SetPaused):
    name: ClassVar[str] = "airflow.unpause"
    paused: ClassVar[bool] = False
    description: ClassVar[str] = "Unpauses a DAG: queued and scheduled runs start again."


def airflow_actions() -> list[Any]:
    """Every `airflow.*` action."""
    return [AirflowTrigger(), AirflowWait(), AirflowClearFailed(), AirflowPause(),
            AirflowUnpause()]
