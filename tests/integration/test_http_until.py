"""http.request with `until:` against a real HTTP server on 127.0.0.1 whose answers change over
time, the way a pipeline's run goes from queued to running to success (issue 14, "Poll until").
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import SecretStr, ValidationError

from app.actions.base import ActionContext, ActionFailed
from app.actions.http import HttpRequest
from app.actions.http_until import lookup, parse_path, same
from app.actions.registry import default_registry
from app.engine.runner import run_check
from tests.support.action_ctx import make_ctx, run_action
from tests.support.net import serve_app

ACTION = HttpRequest()
TOKEN = "pipeline-token-for-tests-0123"


@dataclass
class Resource:
    """A run whose answer follows a schedule: (seconds after the first request, status, body).
    A str body is sent as text, anything else as JSON."""

    schedule: list[tuple[float, int, Any]]
    first_at: float | None = None
    requests: list[str] = field(default_factory=list)  # the method of each request

    def now(self) -> tuple[int, Any]:
        self.first_at = self.first_at if self.first_at is not None else time.monotonic()
        elapsed = time.monotonic() - self.first_at
        current = self.schedule[0]
        for entry in self.schedule:
            if elapsed >= entry[0]:
                current = entry
        return current[1], current[2]


@dataclass
class Pipeline:
    url: str = ""
    runs: dict[str, Resource] = field(default_factory=dict)

    def run(self, name: str, *schedule: tuple[float, int, Any]) -> str:
        """Register a run and return its URL."""
        self.runs[name] = Resource(list(schedule))
        return f"{self.url}/runs/{name}"


def pipeline_app(pipeline: Pipeline) -> FastAPI:
    app = FastAPI()

    @app.api_route("/runs/{name}", methods=["GET", "POST"])
    async def run(name: str, request: Request) -> Response:
        # Like a real pipeline API: no token, no answer.
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"detail": "Unauthorized"}, status_code=401)
        resource = pipeline.runs.get(name)
        if resource is None:
            return JSONResponse({"detail": f"run {name} not found"}, status_code=404)
        resource.requests.append(request.method)
        status, body = resource.now()
        if isinstance(body, str):
            return PlainTextResponse(body, status_code=status,
                                     media_type="text/html")
        return JSONResponse(body, status_code=status)

    return app


@pytest.fixture(scope="module")
async def pipeline() -> AsyncIterator[Pipeline]:
    state = Pipeline()
    async with serve_app(pipeline_app(state)) as running:
        state.url = running.url
        yield state


def ctx(**kwargs: Any) -> ActionContext:
    return make_ctx(allow=["127.0.0.1"], secrets={"pipeline": SecretStr(TOKEN)}, **kwargs)


def polling(url: str, **until: Any) -> dict[str, Any]:
    """Poll `url` for $.state == "success"; `until` overrides, and a None drops a key."""
    spec = {"path": "$.state", "equals": "success", "interval": "100ms", "within": "3s"}
    spec.update(until)
    return {"url": url, "auth_secret": "pipeline",
            "until": {k: v for k, v in spec.items() if v is not None}}


def state(value: Any, **more: Any) -> dict[str, Any]:
    return {"state": value, **more}


async def test_waits_until_the_run_succeeds(pipeline: Pipeline) -> None:
    url = pipeline.run("reaches", (0, 200, state("queued")), (0.3, 200, state("running")),
                       (0.6, 200, state("success", end_date="2026-11-26T10:00:00Z")))
    started = time.monotonic()
    result = await run_action(ACTION, ctx(), **polling(url))
    waited = time.monotonic() - started
    runs = pipeline.runs["reaches"]
    assert 0.6 <= waited < 2.0
    assert result.summary.startswith(f"GET {url}: $.state is \"success\" after ")
    assert result.summary.endswith(f"({len(runs.requests)} requests)")
    assert result.output["value"] == "success"
    assert result.output["attempts"] == len(runs.requests) >= 5
    assert result.output["json"]["end_date"] == "2026-11-26T10:00:00Z"
    assert set(runs.requests) == {"GET"}
    assert TOKEN not in json.dumps(result.output) + result.summary


async def test_in_accepts_any_listed_value_and_compares_json_values(pipeline: Pipeline) -> None:
    url = pipeline.run("listed", (0, 200, {"phase": "1"}), (0.3, 200, {"phase": 1}),
                       (0.6, 200, {"phase": "Succeeded"}))
    result = await run_action(ACTION, ctx(), **polling(
        url, path="phase", equals=None, **{"in": ["Succeeded", "Completed"]}))
    # "1" and 1 are not awaited values, and neither is mistaken for the other.
    assert result.output["value"] == "Succeeded"
    listed = HttpRequest.Params.model_validate(polling(url, equals=None, **{"in": [1]}))
    assert listed.until is not None and listed.until.matches(1)
    assert not listed.until.matches("1") and not listed.until.matches(True)


async def test_a_fail_on_value_ends_the_wait_at_once(pipeline: Pipeline) -> None:
    url = pipeline.run("fails", (0, 200, state("running")), (0.3, 200, state("failed")))
    started = time.monotonic()
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx(), **polling(url, within="10s",
                                                  fail_on=["failed", "upstream_failed"]))
    assert time.monotonic() - started < 2.0  # not the 10 s it was allowed
    message = failed.value.message
    assert message.startswith(f"GET {url}: $.state is \"failed\", a fail_on value, after ")
    assert message.endswith("; it was to become \"success\"")
    assert failed.value.output["value"] == "failed"


async def test_timing_out_names_the_last_value_and_how_long_it_waited(pipeline: Pipeline,
                                                                      ) -> None:
    url = pipeline.run("stuck", (0, 200, state("queued")), (0.2, 200, state("running")))
    started = time.monotonic()
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx(), **polling(url, within="800ms", interval="300ms"))
    waited = time.monotonic() - started
    requests = len(pipeline.runs["stuck"].requests)
    assert 0.8 <= waited < 1.5
    # 0, 0.3, 0.6 and the last one at 0.8 s: the last request goes out at `within` (a slow
    # machine may fit one fewer in).
    assert requests in (3, 4)
    message = failed.value.message
    assert re.fullmatch(
        re.escape(f"GET {url}: $.state did not become \"success\" within 800ms; after ")
        + rf"[01]\.\ds \({requests} requests\) the last answer said: \$\.state is \"running\"",
        message), message
    assert failed.value.output["attempts"] == requests


async def test_a_path_missing_from_the_answer_is_awaited_then_named(pipeline: Pipeline) -> None:
    # Argo and Kubernetes add `status` only once a controller has seen the object.
    url = pipeline.run("appears", (0, 200, {"metadata": {"name": "w"}}),
                       (0.3, 200, {"metadata": {"name": "w"}, "status": {"phase": "Running"}}),
                       (0.5, 200, {"metadata": {"name": "w"}, "status": {"phase": "Succeeded"}}))
    result = await run_action(ACTION, ctx(), **polling(url, path="$.status.phase",
                                                       equals="Succeeded"))
    assert result.output["value"] == "Succeeded"

    never = pipeline.run("never", (0, 200, {"status": {}}))
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx(), **polling(never, path="$.status.phase",
                                                  within="300ms"))
    assert failed.value.message.endswith(
        '$.status.phase is not in the answer ($.status has no key "phase")')
    assert "value" not in failed.value.output


async def test_an_answer_that_is_not_json_fails_at_once(pipeline: Pipeline) -> None:
    url = pipeline.run("html", (0, 200, "<html><body>Sign in</body></html>"))
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx(), **polling(url, within="10s"))
    assert failed.value.message == (
        f"GET {url} answered 200 with a body that is not JSON, and until reads $.state from "
        "a JSON answer: '<html><body>Sign in</body></html>'")
    assert len(pipeline.runs["html"].requests) == 1


async def test_unavailable_is_retried_but_a_client_error_is_not(pipeline: Pipeline) -> None:
    url = pipeline.run("restarting", (0, 503, {"detail": "restarting"}),
                       (0.3, 200, state("success")))
    result = await run_action(ACTION, ctx(), **polling(url))
    assert result.output["value"] == "success"
    assert result.output["attempts"] >= 2

    missing = f"{pipeline.url}/runs/no-such-run"
    with pytest.raises(ActionFailed, match=r"answered 404, expected 200-299: .*not found"):
        await run_action(ACTION, ctx(), **polling(missing, within="10s"))
    unauthorized = polling(url) | {"auth_secret": None}
    with pytest.raises(ActionFailed, match="answered 401"):
        await run_action(ACTION, ctx(), **unauthorized)


async def test_a_drill_reads_once_and_says_what_it_would_wait_for(pipeline: Pipeline) -> None:
    url = pipeline.run("drill", (0, 200, state("running")))
    result = await run_action(ACTION, ctx(dry_run=True), **polling(url, within="10m",
                                                                   interval="5s",
                                                                   fail_on=["failed"]))
    assert result.summary == (
        f"dry run (read-only, one request): would poll GET {url} until $.state equals "
        "\"success\" (every 5s, for up to 10m; fails at once on \"failed\"); "
        "now: $.state is \"running\"")
    assert result.output["value"] == "running" and result.output["attempts"] == 1
    assert pipeline.runs["drill"].requests == ["GET"]


async def test_the_plan_mentions_the_wait(pipeline: Pipeline) -> None:
    url = pipeline.run("planned", (0, 200, state("running")))
    params = HttpRequest.Params.model_validate(polling(url, within="10m", interval="5s"))
    plan = await ACTION.plan(ctx(), params)
    assert plan.summary == (f"GET {url} until $.state equals \"success\" "
                            "(every 5s, for up to 10m)")
    assert plan.resolved["until"] == {"path": "$.state", "wanted": ["success"], "fail_on": [],
                                      "interval": 5.0, "within": 600.0}
    assert pipeline.runs["planned"].requests == []  # a plan sends nothing
    plain = await ACTION.plan(ctx(), HttpRequest.Params.model_validate({"url": url}))
    assert "until" not in plain.resolved  # plans without `until` are unchanged


async def test_a_verification_gets_its_whole_wait(pipeline: Pipeline) -> None:
    # Each attempt of a check is cut at `timeout`; a poll that needs longer gets its `within`.
    url = pipeline.run("verify", (0, 200, state("running")), (1.2, 200, state("success")))
    outcome = await run_check(default_registry(), ctx(), "http.request",
                              polling(url, within="3s", interval="200ms"),
                              within=None, timeout=0.5)
    assert outcome.ok, outcome.summary
    assert outcome.output["value"] == "success"
    assert outcome.attempts == 1  # one run of the action, which polled


def test_waits_are_the_bound_plus_one_interval() -> None:
    params = HttpRequest.Params.model_validate(polling("http://x/", within="10m",
                                                       interval="5s"))
    assert params.waits().at_most == 605.0 and params.waits().at_least == 0.0
    assert HttpRequest.Params.model_validate({"url": "http://x/"}).waits().at_most == 0.0


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "HEAD"])
def test_until_only_with_get(method: str) -> None:
    with pytest.raises(ValidationError, match=rf"works only with GET, not {method}: a repeated "
                                              "POST, PUT, PATCH or DELETE repeats"):
        HttpRequest.Params.model_validate(polling("http://x/") | {"method": method})


BASE = {"path": "$.state", "equals": "success", "within": "1m"}


@pytest.mark.parametrize(("spec", "message"), [
    (BASE | {"path": "$.runs[?(@.state)]"}, "is not a JSON path this action reads: it stops "
                                            "at '[?(@.state)]'"),
    (BASE | {"path": "$..state"}, "stops at '..state'"),
    (BASE | {"path": "state; import os"}, "stops at '; import os'"),
    ({"path": "$.state", "within": "1m"}, "exactly one of `equals` (one value) or `in`"),
    (BASE | {"in": ["a"]}, "exactly one of `equals`"),
    (BASE | {"fail_on": ["success"]}, '"success" is both awaited and in fail_on'),
    (BASE | {"within": "2d"}, "within must be more than 0s and at most 1d"),
    (BASE | {"interval": "10ms"}, "interval must be at least 100ms"),
    ({"path": "$.state", "equals": "success"}, "until.within\n  Field required"),
    (BASE | {"until": "x"}, "Extra inputs are not permitted"),
])
def test_bad_until_is_refused_with_what_to_fix(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        HttpRequest.Params.model_validate({"url": "http://x/", "until": spec})
    assert message in str(refused.value)


def test_paths_are_keys_quoted_keys_and_indexes() -> None:
    assert parse_path("$.dag_runs[0].state") == ("dag_runs", 0, "state")
    assert parse_path("dag_runs[-1].state") == ("dag_runs", -1, "state")
    assert parse_path('$.labels["app.kubernetes.io/name"]') == ("labels",
                                                                 "app.kubernetes.io/name")
    assert parse_path("$") == ()
    document = {"runs": [{"state": "a"}, {"state": "b"}], "n": 3}
    assert lookup(document, ("runs", -1, "state")).value == "b"
    assert lookup(document, ("runs", 5)).missing == "$.runs has 2 item(s), no [5]"
    assert lookup(document, ("n", "x")).missing == "$.n is a number, not an object"
    assert lookup(document, ()).value == document
    assert same(1, 1.0) and not same(True, 1) and not same("3", 3) and same(None, None)
