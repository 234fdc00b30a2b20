"""airflow.* against a real Airflow 3 (REST API v2, JWT), and against a fake Airflow 2 (REST
API v1, basic auth) that checks what Airflow 2 checks, since no Airflow 2 can run here.

Effects are asserted through Airflow's own API: the run exists with the conf, the task saw the
conf, the failed task ran again and the other did not, the DAG is paused.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import SecretStr, ValidationError

from app.actions import airflow_client
from app.actions.airflow import (
    AirflowClearFailed,
    AirflowPause,
    AirflowTrigger,
    AirflowUnpause,
    AirflowWait,
)
from app.actions.base import ActionContext, ActionFailed, Plannable
from app.outbound import DEFAULT_TIMEOUT, OutboundHttp
from tests.support.action_ctx import make_ctx, run_action
from tests.support.airflow import AirflowPeer
from tests.support.net import serve_app

real = pytest.mark.e2e
_executions = itertools.count(100)
FAST = {"interval": "300ms", "timeout": "60s"}


def ctx(url: str, *, secret: str = "admin:admin", allow: list[str] | None = None,
        http: OutboundHttp | None = None, **kwargs: Any) -> ActionContext:
    """A context whose settings point at `url`, with the secret `airflow` holding `secret`."""
    kwargs.setdefault("execution_id", next(_executions))
    return make_ctx(allow=allow or ["127.0.0.1"], http=http, airflow_url=url,
                    airflow_auth_secret="airflow", secrets={"airflow": SecretStr(secret)},
                    **kwargs)


async def plan(action: Any, context: ActionContext, **params: Any) -> Any:
    assert isinstance(action, Plannable)
    return await action.plan(context, action.Params.model_validate(params))


async def failed_run(airflow: AirflowPeer, dag_id: str) -> tuple[ActionContext, str]:
    """Trigger `dag_id` through the action and wait until it has failed."""
    context = ctx(airflow.url, step_id="train")
    started = await run_action(AirflowTrigger(), context, dag_id=dag_id)
    run_id = started.output["dag_run_id"]
    with pytest.raises(ActionFailed, match="ended failed"):
        await run_action(AirflowWait(), context, dag_id=dag_id, dag_run_id=run_id, **FAST)
    return context, run_id


# -- Airflow 3, REST API v2 ----------------------------------------------------------------

@real
async def test_trigger_starts_the_run_with_its_conf_and_a_repeat_attaches(
        airflow: AirflowPeer) -> None:
    context = ctx(airflow.url, step_id="retrain")
    conf = {"model": "fraud-v3", "reason": "drift", "rows": 3}
    first = await run_action(AirflowTrigger(), context, dag_id="runbookd_succeeds", conf=conf)
    run_id = f"runbookd-{context.execution_id}-retrain"
    assert first.output == {
        "dag_id": "runbookd_succeeds", "dag_run_id": run_id, "state": "queued",
        "attached": False, "triggered": True, "dag_paused": False, "airflow": airflow.host,
        "link": f"{airflow.url}/dags/runbookd_succeeds/runs/{run_id}"}
    assert first.summary == (f"triggered run {run_id} of runbookd_succeeds on {airflow.host} "
                             "(state queued)")
    found = await airflow.dag_run("runbookd_succeeds", run_id)
    assert found is not None and found["conf"] == conf

    # A retry or a resume of the step meets its own run and starts no second one.
    again = await run_action(AirflowTrigger(), context, dag_id="runbookd_succeeds", conf=conf)
    assert again.output["attached"] is True and again.output["dag_run_id"] == run_id
    assert again.summary.startswith(f"attached to run {run_id} of runbookd_succeeds")
    runs = [r["dag_run_id"] for r in await airflow.dag_runs("runbookd_succeeds")]
    assert runs.count(run_id) == 1

    waited = await run_action(AirflowWait(), context, dag_id="runbookd_succeeds",
                              dag_run_id=run_id, **FAST)
    assert waited.output["state"] == "success"
    assert waited.summary.startswith(f"run {run_id} of runbookd_succeeds on {airflow.host} "
                                     "ended success")
    # The task itself received the conf (it returns it as its XCom).
    assert await airflow.xcom("runbookd_succeeds", run_id, "record_conf") == conf

    # The same run id with another conf is somebody else's run: never attach to it.
    with pytest.raises(ActionFailed, match=f"run {run_id} of runbookd_succeeds on .* already "
                                           "exists with a different conf"):
        await run_action(AirflowTrigger(), context, dag_id="runbookd_succeeds",
                         conf={"model": "other"})


@real
async def test_wait_fails_the_step_when_the_run_fails(airflow: AirflowPeer) -> None:
    context = ctx(airflow.url, step_id="retrain")
    started = await run_action(AirflowTrigger(), context, dag_id="runbookd_fails")
    run_id = started.output["dag_run_id"]
    with pytest.raises(ActionFailed) as failed:
        await run_action(AirflowWait(), context, dag_id="runbookd_fails", dag_run_id=run_id,
                         **FAST)
    assert failed.value.message == (f"run {run_id} of runbookd_fails on {airflow.host} ended "
                                    "failed: failed tasks broken")
    assert failed.value.output["state"] == "failed"
    assert failed.value.output["failed_tasks"] == ["broken"]
    assert (await airflow.dag_run("runbookd_fails", run_id) or {})["state"] == "failed"


@real
async def test_wait_times_out_cleanly(airflow: AirflowPeer) -> None:
    context = ctx(airflow.url, step_id="retrain")
    started = await run_action(AirflowTrigger(), context, dag_id="runbookd_succeeds")
    run_id = started.output["dag_run_id"]
    began = time.monotonic()
    with pytest.raises(ActionFailed, match=rf"run {run_id} of runbookd_succeeds on "
                                           rf"127\.0\.0\.1:\d+ is still (queued|running) after "
                                           r"\S+ \(timeout 600ms, \d+ reads\)") as timed_out:
        await run_action(AirflowWait(), context, dag_id="runbookd_succeeds", dag_run_id=run_id,
                         interval="200ms", timeout="600ms")
    assert time.monotonic() - began < 5
    assert timed_out.value.output["timed_out"] is True
    # Nothing was cut: the run goes on and ends on its own.
    assert await airflow.wait_for_state("runbookd_succeeds", run_id) == "success"


@real
async def test_clear_failed_reruns_only_the_failed_task(airflow: AirflowPeer) -> None:
    context, run_id = await failed_run(airflow, "runbookd_flaky")
    before = await airflow.task_instances("runbookd_flaky", run_id)
    assert {k: (v["state"], v["try_number"]) for k, v in before.items()} == {
        "prepare": ("success", 1), "train": ("failed", 1)}
    params = {"dag_id": "runbookd_flaky", "dag_run_id": run_id}

    planned = await plan(AirflowClearFailed(), context, **params)
    assert planned.summary == (f"clear 1 failed task instance(s) of run {run_id} of "
                               f"runbookd_flaky on {airflow.host}: train (the run goes back to "
                               "queued)")
    assert planned.resolved["tasks"] == ["train"]
    drill = ctx(airflow.url, dry_run=True, execution_id=context.execution_id)
    rehearsed = await run_action(AirflowClearFailed(), drill, **params)
    assert rehearsed.summary.startswith("would clear 1 failed task instance(s)")
    # Neither the plan nor the drill cleared anything (Airflow's clear defaults to a dry run).
    assert (await airflow.dag_run("runbookd_flaky", run_id) or {})["state"] == "failed"
    assert (await airflow.task_instances("runbookd_flaky", run_id))["train"]["state"] == "failed"

    cleared = await run_action(AirflowClearFailed(), context, **params)
    assert cleared.output["cleared"] == ["train"]
    waited = await run_action(AirflowWait(), context, **params, **FAST)
    assert waited.output["state"] == "success"
    after = await airflow.task_instances("runbookd_flaky", run_id)
    assert {k: (v["state"], v["try_number"]) for k, v in after.items()} == {
        "prepare": ("success", 1), "train": ("success", 2)}

    # Nothing failed any more: a repeat changes nothing.
    again = await run_action(AirflowClearFailed(), context, **params)
    assert again.output["cleared"] == []
    assert again.summary.endswith("has no failed task instances (no change)")


@real
async def test_latest_names_the_newest_run_in_the_plan_and_acts_on_it(
        airflow: AirflowPeer) -> None:
    _, older = await failed_run(airflow, "runbookd_flaky")
    context, newest = await failed_run(airflow, "runbookd_flaky")
    latest = {"dag_id": "runbookd_flaky", "dag_run_id": "@latest"}
    named = f"run {newest} (the newest of runbookd_flaky) on {airflow.host}"

    planned = await plan(AirflowClearFailed(), context, **latest)
    assert planned.summary == (f"clear 1 failed task instance(s) of {named}: train (the run "
                               "goes back to queued)")
    # The approval covers that run: a newer one by the time the step runs is another plan.
    assert planned.resolved["dag_run_id"] == newest
    drill = ctx(airflow.url, dry_run=True)
    read = await run_action(AirflowWait(), drill, **latest)
    assert read.summary.endswith(f"for {named} to end; now failed")
    assert read.output["dag_run_id"] == newest

    cleared = await run_action(AirflowClearFailed(), context, **latest)
    assert (cleared.output["dag_run_id"], cleared.output["cleared"]) == (newest, ["train"])
    waited = await run_action(AirflowWait(), context, **latest, **FAST)
    assert (waited.output["dag_run_id"], waited.output["state"]) == (newest, "success")
    assert waited.summary.startswith(f"{named} ended success")
    # The older run was not touched.
    assert (await airflow.dag_run("runbookd_flaky", older) or {})["state"] == "failed"

    # A DAG without runs has no newest run: a clear failure, not a guess.
    for action in (AirflowClearFailed(), AirflowWait()):
        with pytest.raises(ActionFailed, match=r"DAG 'runbookd_never_run' on 127\.0\.0\.1:\d+ "
                                               r"has no runs, so '@latest' names none \(trigger "
                                               r"it once, or name a run\)"):
            await run_action(action, context, dag_id="runbookd_never_run",
                             dag_run_id="@latest", **({} if action.name.endswith("clear_failed")
                                                      else FAST))
    with pytest.raises(ActionFailed, match=r"Airflow at 127\.0\.0\.1:\d+ has no DAG 'nope'"):
        await plan(AirflowClearFailed(), context, dag_id="nope", dag_run_id="@latest")
    # Without the "@" it is a run id like any other; "@" names nothing else, and triggering
    # "@latest" makes no sense.
    with pytest.raises(ActionFailed, match="has no run 'latest' of DAG 'runbookd_flaky'"):
        await plan(AirflowClearFailed(), context, dag_id="runbookd_flaky", dag_run_id="latest")
    with pytest.raises(ValidationError, match="dag_run_id"):
        await run_action(AirflowWait(), context, dag_id="runbookd_flaky", dag_run_id="@newest")
    with pytest.raises(ValidationError, match="dag_run_id"):
        await run_action(AirflowTrigger(), context, dag_id="runbookd_flaky",
                         dag_run_id="@latest")


@real
async def test_pause_and_unpause(airflow: AirflowPeer) -> None:
    context = ctx(airflow.url, step_id="pause")
    dag = {"dag_id": "runbookd_fails"}
    try:
        planned = await plan(AirflowPause(), context, **dag)
        assert planned.summary == (f"pause DAG runbookd_fails on {airflow.host}: unpaused → "
                                   "paused")
        assert planned.resolved == {"airflow": airflow.host, "dag_id": "runbookd_fails",
                                    "from": False, "to": True}
        drill = ctx(airflow.url, dry_run=True)
        assert (await run_action(AirflowPause(), drill, **dag)).summary.startswith(
            "would pause DAG runbookd_fails")
        assert await airflow.is_paused("runbookd_fails") is False

        paused = await run_action(AirflowPause(), context, **dag)
        assert paused.output == {"dag_id": "runbookd_fails", "is_paused": True,
                                 "changed": True}
        assert await airflow.is_paused("runbookd_fails") is True
        again = await run_action(AirflowPause(), context, **dag)
        assert again.output["changed"] is False
        assert again.summary.endswith("is already paused (no change)")

        # A run triggered while the DAG is paused waits; the output says why.
        started = await run_action(AirflowTrigger(), context, **dag)
        assert started.output["dag_paused"] is True
        assert "the DAG is paused: the run stays queued" in started.summary

        unplanned = await plan(AirflowUnpause(), context, **dag)
        assert unplanned.summary.endswith("paused → unpaused")
        unpaused = await run_action(AirflowUnpause(), context, **dag)
        assert unpaused.output["is_paused"] is False and unpaused.output["changed"] is True
        assert await airflow.is_paused("runbookd_fails") is False
    finally:
        await airflow.set_paused("runbookd_fails", False)


@real
async def test_trigger_plan_and_drill_change_nothing(airflow: AirflowPeer) -> None:
    context = ctx(airflow.url, step_id="retrain")
    run_id = f"runbookd-{context.execution_id}-retrain"
    params = {"dag_id": "runbookd_succeeds", "conf": {"model": "fraud-v3"}}
    planned = await plan(AirflowTrigger(), context, **params)
    assert planned.summary == (f'trigger runbookd_succeeds with conf {{"model": "fraud-v3"}} '
                               f"as run {run_id} on {airflow.host}")
    assert planned.resolved["dag_run_id"] == run_id
    drill = ctx(airflow.url, dry_run=True, step_id="retrain",
                execution_id=context.execution_id)
    rehearsed = await run_action(AirflowTrigger(), drill, **params)
    assert rehearsed.summary.startswith("would trigger runbookd_succeeds")
    assert rehearsed.output["triggered"] is False
    waited = await run_action(AirflowWait(), drill, dag_id="runbookd_succeeds",
                              dag_run_id=run_id)
    assert waited.summary.endswith("it does not exist (a drill triggers nothing)")
    assert await airflow.dag_run("runbookd_succeeds", run_id) is None

    # Once the run exists, the plan says it will attach.
    await run_action(AirflowTrigger(), context, **params)
    attach = await plan(AirflowTrigger(), context, **params)
    assert attach.summary.startswith(f"run {run_id} of runbookd_succeeds already exists on "
                                     f"{airflow.host} (state ")
    assert attach.summary.endswith("attach to it, trigger nothing")


@real
async def test_bad_parameters_and_settings_say_what_to_fix(airflow: AirflowPeer) -> None:
    context = ctx(airflow.url)
    for bad in ("../admin", ".", "dag id", "x" * 251, ""):
        with pytest.raises(ValidationError, match="dag_id"):
            await run_action(AirflowPause(), context, dag_id=bad)
    for bad in ("..", "a/b", "run?x=1"):
        with pytest.raises(ValidationError, match="dag_run_id"):
            await run_action(AirflowWait(), context, dag_id="runbookd_fails", dag_run_id=bad)
    with pytest.raises(ValidationError, match="carries a user or password"):
        await run_action(AirflowPause(), context, dag_id="runbookd_fails",
                         url=f"http://admin:admin@127.0.0.1:{airflow.port}")
    with pytest.raises(ActionFailed, match=r"host '127\.0\.0\.1' is not on the HTTP "
                                           r"allow-list \(add it to RUNBOOKD_HTTP_ALLOWLIST\)"):
        await run_action(AirflowPause(), ctx(airflow.url, allow=["airflow.internal"]),
                         dag_id="runbookd_fails")
    missing = make_ctx(allow=["127.0.0.1"], airflow_url=airflow.url)
    with pytest.raises(ActionFailed, match="no Airflow credential: set "
                                           "RUNBOOKD_AIRFLOW_AUTH_SECRET"):
        await run_action(AirflowPause(), missing, dag_id="runbookd_fails")
    with pytest.raises(ActionFailed, match="secret 'nope' is not configured: add it to "
                                           "RUNBOOKD_SECRETS"):
        await run_action(AirflowPause(), missing, dag_id="runbookd_fails", auth_secret="nope")
    with pytest.raises(ActionFailed, match="no Airflow URL: set RUNBOOKD_AIRFLOW_URL"):
        await run_action(AirflowPause(), make_ctx(allow=["127.0.0.1"]), dag_id="x")
    with pytest.raises(ActionFailed, match="secret 'airflow' must hold `user:password`"):
        await run_action(AirflowPause(), ctx(airflow.url, secret="just-a-token"),
                         dag_id="runbookd_fails")
    with pytest.raises(ActionFailed) as refused:
        await run_action(AirflowPause(), ctx(airflow.url, secret="admin:wrong-password"),
                         dag_id="runbookd_fails")
    assert refused.value.message == (
        f"reading DAG runbookd_fails: Airflow at {airflow.host} gave no token (POST "
        "/auth/token answered 401: Invalid credentials): check the user and password in "
        "secret 'airflow'")
    with pytest.raises(ActionFailed, match=r"Airflow at 127\.0\.0\.1:\d+ has no DAG 'nope' "):
        await run_action(AirflowTrigger(), ctx(airflow.url, step_id="s"), dag_id="nope")
    with pytest.raises(ActionFailed, match=r"has no run 'runbookd-0-nothing' of DAG "
                                           "'runbookd_fails'"):
        await run_action(AirflowWait(), context, dag_id="runbookd_fails",
                         dag_run_id="runbookd-0-nothing", **FAST)
    with pytest.raises(ActionFailed, match=r"answered 404 to GET /api/v1/dags/runbookd_fails: "
                                           r".*removed in Airflow 3.* \(this is Airflow 3: use "
                                           r"`api: v2`\)"):
        await run_action(AirflowPause(), context, dag_id="runbookd_fails", api="v1")
    with pytest.raises(ActionFailed, match="outside an execution needs `dag_run_id`"):
        await run_action(AirflowTrigger(), ctx(airflow.url, execution_id=None),
                         dag_id="runbookd_fails")


@real
async def test_the_token_is_reused_and_renewed_once_when_refused(airflow: AirflowPeer) -> None:
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(f"{request.method} {request.url.path}")

    # The service's own timeout: Airflow on SQLite can hold a write for seconds while its
    # scheduler commits, and httpx's default of 5 s timed out a PATCH on a busy CI host.
    client = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, event_hooks={"request": [record]})
    http = OutboundHttp(["127.0.0.1"], client=client)
    try:
        airflow_client._TOKENS.clear()
        for _ in range(2):
            await run_action(AirflowPause(), ctx(airflow.url, http=http),
                             dag_id="runbookd_succeeds")
        assert seen.count("POST /auth/token") == 1
        # A token the server no longer accepts (expired, or a new signing key): 403, once.
        for key in airflow_client._TOKENS:
            airflow_client._TOKENS[key] = "eyJhbGciOiJIUzI1NiJ9.e30.not-a-valid-signature"
        seen.clear()
        await run_action(AirflowPause(), ctx(airflow.url, http=http),
                         dag_id="runbookd_succeeds")
        assert seen == ["GET /api/v2/dags/runbookd_succeeds", "POST /auth/token",
                        "GET /api/v2/dags/runbookd_succeeds"]
    finally:
        await airflow.set_paused("runbookd_succeeds", False)
        await client.aclose()


# -- Airflow 2, REST API v1 (a fake that checks what Airflow 2 checks) ---------------------

V1_TRIGGER_FIELDS = {"dag_run_id", "execution_date", "conf", "note"}
V1_CLEAR_FIELDS = {"dry_run", "dag_run_id", "only_failed", "reset_dag_runs", "task_ids",
                   "start_date", "end_date", "only_running", "include_subdags",
                   "include_parentdag", "include_upstream", "include_downstream",
                   "include_future", "include_past"}

V1_RUN_ORDER = {"id", "state", "dag_id", "execution_date", "dag_run_id", "start_date",
                "end_date", "updated_at", "external_trigger", "conf"}


@dataclass
class FakeAirflow2:
    """Airflow 2's REST API v1 for the calls the actions make, with its checks: basic auth
    (401 otherwise), marshmallow schemas that refuse unknown fields (400), a required
    timezone-aware `execution_date` name (Airflow 2.0 knows no `logical_date`), 409 for a
    run id that exists, and a clear that is a dry run unless `dry_run` is false."""

    url: str = ""
    credential: str = "ops:airflow2-password"
    paused: dict[str, bool] = field(default_factory=lambda: {"retrain": False})
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def basic_auth(request: Request, call_next: Any) -> Response:
            expected = "Basic " + base64.b64encode(self.credential.encode()).decode()
            if request.headers.get("authorization") != expected:
                return JSONResponse({"title": "Unauthorized", "status": 401,
                                     "detail": None}, status_code=401)
            body = await request.body()
            self.requests.append((request.method, request.url.path,
                                  (await request.json()) if body else None))
            return await call_next(request)

        def no_dag(dag_id: str) -> Response | None:
            if dag_id in self.paused:
                return None
            return JSONResponse({"title": "DAG not found", "status": 404,
                                 "detail": f"DAG with dag_id: '{dag_id}' not found"}, 404)

        @app.get("/api/v1/dags/{dag_id}")
        async def get_dag(dag_id: str) -> Response:
            return no_dag(dag_id) or JSONResponse({"dag_id": dag_id,
                                                   "is_paused": self.paused[dag_id]})

        @app.patch("/api/v1/dags/{dag_id}")
        async def patch_dag(dag_id: str, request: Request) -> Response:
            body = await request.json()
            if set(body) - {"is_paused"}:
                return bad_request(f"Unknown field: {sorted(set(body) - {'is_paused'})}")
            self.paused[dag_id] = bool(body["is_paused"])
            return no_dag(dag_id) or JSONResponse({"dag_id": dag_id,
                                                   "is_paused": self.paused[dag_id]})

        @app.post("/api/v1/dags/{dag_id}/dagRuns")
        async def trigger(dag_id: str, request: Request) -> Response:
            body = await request.json()
            unknown = set(body) - V1_TRIGGER_FIELDS
            if unknown:
                return bad_request(f"{{{sorted(unknown)[0]!r}: ['Unknown field.']}}")
            try:
                when = dt.datetime.fromisoformat(body["execution_date"])
            except (KeyError, TypeError, ValueError):
                return bad_request("execution_date: a timezone-aware datetime is required")
            if when.tzinfo is None:
                return bad_request("execution_date: Naive datetime is disallowed")
            run_id = body["dag_run_id"]
            if run_id in self.runs:
                return JSONResponse({"title": "Conflict", "status": 409, "detail": (
                    f"DAGRun with DAG ID: '{dag_id}' and DAGRun ID: '{run_id}' already "
                    "exists")}, 409)
            self.runs[run_id] = {"dag_id": dag_id, "dag_run_id": run_id, "state": "queued",
                                 "conf": body.get("conf", {}),
                                 "execution_date": body["execution_date"]}
            return no_dag(dag_id) or JSONResponse(self.runs[run_id])

        @app.get("/api/v1/dags/{dag_id}/dagRuns")
        async def list_runs(dag_id: str, order_by: str = "id", limit: int = 100) -> Response:
            # Airflow 2.1+ orders by its DagRun columns; run_after is Airflow 3's.
            key = order_by.lstrip("-")
            if key not in V1_RUN_ORDER:
                return bad_request(f"Ordering with '{key}' is disallowed or the attribute "
                                   "does not exist on the model")
            runs = sorted((r for r in self.runs.values() if r["dag_id"] == dag_id),
                          key=lambda r: r.get(key) or "", reverse=order_by.startswith("-"))
            return no_dag(dag_id) or JSONResponse({"dag_runs": runs[:limit],
                                                   "total_entries": len(runs)})

        @app.get("/api/v1/dags/{dag_id}/dagRuns/{run_id}")
        async def get_run(dag_id: str, run_id: str) -> Response:
            if run_id not in self.runs:
                return JSONResponse({"title": "DAGRun not found", "status": 404}, 404)
            return JSONResponse(self.runs[run_id])

        @app.get("/api/v1/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        async def task_instances(dag_id: str, run_id: str, state: str | None = None,
                                 ) -> Response:
            tasks = self.failed.get(run_id, []) if state == "failed" else []
            return JSONResponse({"task_instances": [
                {"task_id": task, "dag_id": dag_id, "state": "failed"} for task in tasks],
                "total_entries": len(tasks)})

        @app.post("/api/v1/dags/{dag_id}/clearTaskInstances")
        async def clear(dag_id: str, request: Request) -> Response:
            body = await request.json()
            if set(body) - V1_CLEAR_FIELDS:
                return bad_request(f"Unknown field: {sorted(set(body) - V1_CLEAR_FIELDS)}")
            run_id = body.get("dag_run_id")
            tasks = self.failed.get(run_id, []) if body.get("only_failed") else []
            answer = {"task_instances": [{"task_id": t, "dag_id": dag_id,
                                          "dag_run_id": run_id} for t in tasks]}
            if body.get("dry_run", True) is False:  # Airflow's default is a dry run
                self.failed[run_id] = []
                if body.get("reset_dag_runs") and tasks:
                    self.runs[run_id]["state"] = "queued"
            return JSONResponse(answer)

        return app


def bad_request(detail: str) -> Response:
    return JSONResponse({"title": "Bad Request", "status": 400, "detail": detail}, 400)


@contextlib.asynccontextmanager
async def fake_airflow2() -> AsyncIterator[FakeAirflow2]:
    fake = FakeAirflow2()
    async with serve_app(fake.app()) as server:
        fake.url = server.url
        yield fake


async def test_airflow2_v1_basic_auth_and_execution_date() -> None:
    async with fake_airflow2() as fake:
        context = make_ctx(allow=["127.0.0.1"], airflow_url=fake.url, airflow_api="v1",
                           airflow_auth_secret="af2", secrets={"af2": SecretStr(fake.credential)},
                           execution_id=42, step_id="retrain")
        started = await run_action(AirflowTrigger(), context, dag_id="retrain",
                                   conf={"model": "fraud-v3"})
        assert started.output["dag_run_id"] == "runbookd-42-retrain"
        assert started.output["link"] == (f"{fake.url}/dags/retrain/grid?"
                                          "dag_run_id=runbookd-42-retrain")
        sent = [body for method, path, body in fake.requests
                if (method, path) == ("POST", "/api/v1/dags/retrain/dagRuns")]
        assert len(sent) == 1 and set(sent[0]) == {"dag_run_id", "execution_date", "conf"}
        assert sent[0]["conf"] == {"model": "fraud-v3"}
        again = await run_action(AirflowTrigger(), context, dag_id="retrain",
                                 conf={"model": "fraud-v3"})
        assert again.output["attached"] is True and len(fake.runs) == 1

        fake.runs["runbookd-42-retrain"]["state"] = "failed"
        fake.failed["runbookd-42-retrain"] = ["train"]
        params = {"dag_id": "retrain", "dag_run_id": "runbookd-42-retrain"}
        with pytest.raises(ActionFailed, match="ended failed: failed tasks train"):
            await run_action(AirflowWait(), context, **params, **FAST)
        planned = await plan(AirflowClearFailed(), context, **params)
        assert planned.resolved["tasks"] == ["train"] and fake.failed[params["dag_run_id"]]
        cleared = await run_action(AirflowClearFailed(), context, **params)
        assert cleared.output["cleared"] == ["train"]
        clears = [body for method, path, body in fake.requests
                  if path == "/api/v1/dags/retrain/clearTaskInstances"]
        assert clears[-1] == {"dry_run": False, "dag_run_id": "runbookd-42-retrain",
                              "only_failed": True, "reset_dag_runs": True}
        assert fake.runs["runbookd-42-retrain"]["state"] == "queued"
        fake.runs["runbookd-42-retrain"]["state"] = "success"
        assert (await run_action(AirflowWait(), context, **params, **FAST)).output["state"] \
            == "success"

        await run_action(AirflowPause(), context, dag_id="retrain")
        assert fake.paused["retrain"] is True
        await run_action(AirflowUnpause(), context, dag_id="retrain")
        assert fake.paused["retrain"] is False
        assert not any(path == "/auth/token" for _, path, _ in fake.requests)


async def test_airflow2_wrong_password_says_which_secret() -> None:
    async with fake_airflow2() as fake:
        context = make_ctx(allow=["127.0.0.1"], airflow_url=fake.url, airflow_api="v1",
                           airflow_auth_secret="af2", secrets={"af2": SecretStr("ops:old")})
        with pytest.raises(ActionFailed) as refused:
            await run_action(AirflowPause(), context, dag_id="retrain")
        assert refused.value.message.endswith(
            "answered 401 to GET /api/v1/dags/retrain: Unauthorized (check the user and "
            "password in secret 'af2', and that this is Airflow 2: Airflow 3 needs `api: v2`)")
        assert "ops:old" not in refused.value.message
        assert fake.requests == []


async def test_airflow2_latest_is_the_newest_by_execution_date() -> None:
    async with fake_airflow2() as fake:
        context = make_ctx(allow=["127.0.0.1"], airflow_url=fake.url, airflow_api="v1",
                           airflow_auth_secret="af2", secrets={"af2": SecretStr(fake.credential)},
                           execution_id=43)
        latest = {"dag_id": "retrain", "dag_run_id": "@latest"}
        with pytest.raises(ActionFailed, match=r"DAG 'retrain' on .* has no runs"):
            await plan(AirflowClearFailed(), context, **latest)
        for run_id, day in (("older", "2026-11-29"), ("newer", "2026-11-30")):
            fake.runs[run_id] = {"dag_id": "retrain", "dag_run_id": run_id, "state": "failed",
                                 "conf": {}, "execution_date": f"{day}T06:00:00+00:00"}
            fake.failed[run_id] = ["train"]
        planned = await plan(AirflowClearFailed(), context, **latest)
        assert planned.resolved["dag_run_id"] == "newer"
        assert "run newer (the newest of retrain) on " in planned.summary
