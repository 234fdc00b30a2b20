"""A real stack, end to end: Debian's Prometheus and Alertmanager, runbookd with the shipped
catalog, and a real MLflow tracking server.

1. A Prometheus rule on a drift metric the test controls (served by a small exporter) fires;
   the alert goes through Alertmanager (bearer auth) to runbookd.
2. The shipped `model-drift-mlflow` runbook runs its safe checks, then asks for approval of
   the rollback of the MLflow alias `champion`.
3. The test approves through the API as alice, and the alias rolls back to the older version.
4. The test lowers the metric, and the verification, a Prometheus query, passes.
5. Alertmanager sends the resolved.
6. The execution has ended `succeeded`, with a complete timeline and a postmortem draft.

Two facts of the shipped runbook shape the timing (see the report of this suite):
- Its precondition `max_over_time(max(...)[6h:1m]) > 0.2` is a subquery evaluated at whole
  minutes, so it sees the drift only once a minute boundary has passed after the first high
  sample. The drift is raised a few seconds before a whole minute and Alertmanager's
  group_wait delivers the alert just after it.
- After the verification it plans a retraining run; this stack has no Airflow (the drills in
  tests/e2e/drills/ have one), so there is no plan, nobody is asked to approve it, and the step
  fails without running (`on_failure: continue`). The rule keeps firing for 12 s after the
  drift falls (`keep_firing_for`, the usual anti-flap).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.actions.mlflow import MlflowSetAlias
from app.config import Settings
from app.main import create_app
from tests.conftest import DATABASES
from tests.support import wait
from tests.support.action_ctx import make_ctx, run_action
from tests.support.alertmanager import run_alertmanager
from tests.support.auth import WEBHOOK_TOKEN, auth
from tests.support.binaries import need_binary, need_module
from tests.support.net import free_port, serve_app
from tests.support.peers import (
    Exporter,
    Peer,
    create_mlflow_version,
    run_exporter,
    run_mlflow,
    run_process_peer,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = "model-drift-mlflow"
RISKY_STEP = "rollback-champion"
RETRAIN_STEP = "queue-retraining"
SAFE_STEPS = ["check-freshness", "check-inputs", "check-serving", "read-champion"]
MLFLOW_API = "/api/2.0/mlflow"
# Alertmanager holds a new group this long: the alert must arrive after the whole minute that
# follows the first high sample (see the module docstring).
GROUP_WAIT = 18
RAISE_WINDOW = (44, 54)  # seconds of the minute in which the drift may go up
KEEP_FIRING = 12

RULES = """\
groups:
  - name: ml-drift
    interval: 1s
    rules:
      - alert: ModelDrift
        expr: ml_model_drift_score > 0.2
        for: 0s
        keep_firing_for: {keep}s
        labels: {{severity: critical, team: ml-platform, registry: mlflow}}
        annotations:
          summary: "Input drift on {{{{ $labels.model }}}} ({{{{ $labels.env }}}})"
"""


def write_prometheus_config(workdir: Path, *, target: str, alertmanager: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules.yml").write_text(RULES.format(keep=KEEP_FIRING))
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": "ml-serving",
                            "static_configs": [{"targets": [target]}]}],
    }))
    return config


@contextlib.asynccontextmanager
async def run_prometheus_with_rules(binary: str, workdir: Path, *, port: int, target: str,
                                    alertmanager: str) -> AsyncIterator[Peer]:
    """Prometheus scraping `target` every second, evaluating the drift rule every second and
    sending its alerts to `alertmanager` (host:port)."""
    config = write_prometheus_config(workdir, target=target, alertmanager=alertmanager)
    argv = [binary, f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]
    async with run_process_peer(argv, ready_url=f"http://127.0.0.1:{port}/-/ready", port=port,
                                workdir=workdir, timeout=30) as peer:
        yield peer


# Polling a peer of the stack: an HTTP error (it is still starting, say) means "not yet".
eventually = functools.partial(wait.eventually, ignore=(httpx.HTTPError,))


class Signals:
    """The series the shipped runbook reads, served by the exporter the test controls."""

    def __init__(self, exporter: Exporter, model: str):
        self.exporter = exporter
        labels = f'model="{model}",env="production"'
        self.drift = f"ml_model_drift_score{{{labels}}}"
        self.counters = {
            f"ml_input_rows_total{{{labels}}}": 50.0,
            f"ml_input_validation_failures_total{{{labels}}}": 0.01,  # 0.02 %: valid inputs
            f'ml_serving_requests_total{{{labels},code="200"}}': 40.0,
            f'ml_serving_requests_total{{{labels},code="500"}}': 0.02,  # 0.05 %: healthy
        }
        exporter.set(f'ml_feature_last_materialized_timestamp_seconds{{model="{model}"}}',
                     time.time())
        for name in self.counters:
            exporter.set(name, 0.0)

    async def feed(self) -> None:
        """Counters keep counting, as a live service's do (rate() needs them to move)."""
        totals = dict.fromkeys(self.counters, 0.0)
        while True:
            for name, per_tick in self.counters.items():
                totals[name] += per_tick
                self.exporter.set(name, totals[name])
            await asyncio.sleep(0.5)


class Stack:
    def __init__(self, runbookd: str, mlflow: str, prometheus: str, tokens: dict[str, str]):
        self.runbookd = runbookd
        self.mlflow = mlflow
        self.prometheus = prometheus
        self.tokens = tokens
        self.http = httpx.AsyncClient(timeout=10)

    async def api(self, path: str, who: str = "victor") -> Any:
        answer = await self.http.get(f"{self.runbookd}{path}", headers=auth(self.tokens[who]))
        answer.raise_for_status()
        return answer.json()

    async def approve(self, execution_id: int, step: str) -> httpx.Response:
        return await self.http.post(
            f"{self.runbookd}/api/v1/executions/{execution_id}/steps/{step}/approve",
            headers=auth(self.tokens["alice"]), json={"comment": "checked the drift dashboard"})

    async def detail(self, execution_id: int) -> dict[str, Any]:
        return await self.api(f"/api/v1/executions/{execution_id}")

    async def champion(self, model: str) -> str:
        answer = await self.http.get(f"{self.mlflow}{MLFLOW_API}/registered-models/alias",
                                     params={"name": model, "alias": "champion"})
        answer.raise_for_status()
        return str(answer.json()["model_version"]["version"])

    async def prometheus_query(self, query: str) -> list[dict[str, Any]]:
        answer = await self.http.get(f"{self.prometheus}/api/v1/query",
                                     params={"query": query})
        answer.raise_for_status()
        return answer.json()["data"]["result"]


def step_of(detail: dict[str, Any], step_id: str) -> dict[str, Any]:
    [found] = [s for s in detail["steps"] if s["step_id"] == step_id and s["kind"] == "step"]
    return found


async def wait_for_raise_window() -> None:
    """Until the wall clock is a few seconds before a whole minute (see the docstring)."""
    while True:
        now = dt.datetime.now(dt.UTC)
        second = now.second + now.microsecond / 1e6
        if RAISE_WINDOW[0] <= second < RAISE_WINDOW[1]:
            return
        await asyncio.sleep(min((RAISE_WINDOW[0] - second) % 60, 1.0))


@pytest.fixture(scope="module")
async def mlflow(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Peer]:
    """One MLflow server for this module (each test registers a model of its own)."""
    need_module("mlflow")
    async with run_mlflow(tmp_path_factory.mktemp("mlflow")) as peer:
        yield peer


# One database per run, PostgreSQL when there is one (as in CI): this test's cost is its peers
# and the wait for a whole minute, and every other e2e suite already runs on both databases.
@pytest.mark.parametrize("db_url", [DATABASES[-1]], indirect=True)
async def test_drift_fires_rolls_back_the_mlflow_alias_on_approval_and_resolves(
        tmp_path: Path, make_settings: Callable[..., Settings], tokens: dict[str, str],
        mlflow: Peer) -> None:
    prometheus_bin = need_binary("prometheus")
    alertmanager_bin = need_binary("prometheus-alertmanager")
    model = f"drift-{uuid.uuid4().hex[:8]}"
    mlflow_host = f"127.0.0.1:{mlflow.port}"

    # The registry: two versions; runbookd's own action moved champion to v1, then to v2,
    # and recorded that history, which the rollback walks back.
    versions = []
    for n in (1, 2):
        files = {"weights.bin": f"weights of version {n}".encode() * 100,
                 "conf/config.json": f'{{"version": {n}}}'.encode()}
        version, _ = await asyncio.to_thread(create_mlflow_version, mlflow.url, model, files,
                                             workdir=tmp_path)
        versions.append(version)
    older, newer = versions
    ctx = make_ctx(allow=[mlflow_host], mlflow_url=mlflow.url)
    for version in versions:
        await run_action(MlflowSetAlias(), ctx, model=model, alias="champion", version=version)

    prometheus_port = free_port()
    settings = make_settings(
        mappings=REPO / "alert_mappings.yaml", remediations_dir=REPO / "remediations",
        mlflow_url=mlflow.url, prometheus_url=f"http://127.0.0.1:{prometheus_port}",
        http_allowlist=[mlflow_host, f"127.0.0.1:{prometheus_port}"],
        # The retraining step's credentials, as an operator configures them; Airflow itself
        # is not part of this stack (RUNBOOKD_AIRFLOW_URL stays unset).
        secrets={"airflow_token": "airflow-token-for-the-e2e-stack"})
    with run_exporter() as exporter:
        signals = Signals(exporter, model)
        exporter.set(signals.drift, 0.05)
        feeder = asyncio.create_task(signals.feed())
        try:
            async with (
                serve_app(create_app(settings)) as runbookd,
                run_alertmanager(alertmanager_bin, tmp_path / "alertmanager",
                                 webhook_url=f"{runbookd.url}/webhooks/alertmanager",
                                 token=WEBHOOK_TOKEN, group_by=["alertname", "model"],
                                 group_wait=f"{GROUP_WAIT}s") as am,
                run_prometheus_with_rules(prometheus_bin, tmp_path / "prometheus",
                                          port=prometheus_port, target=exporter.target,
                                          alertmanager=f"127.0.0.1:{am.peer.port}") as prom,
            ):
                stack = Stack(runbookd.url, mlflow.url, prom.url, tokens)
                try:
                    await drive_the_incident(stack, signals, model, older=older, newer=newer)
                finally:
                    await stack.http.aclose()
        finally:
            feeder.cancel()


async def drive_the_incident(stack: Stack, signals: Signals, model: str, *, older: str,
                             newer: str) -> None:
    exporter = signals.exporter
    assert await stack.champion(model) == newer

    # Prometheus must know its Alertmanager before the rule fires, or its first notification
    # waits a whole resend delay (1 minute).
    async def ready() -> bool | None:
        found = await stack.http.get(f"{stack.prometheus}/api/v1/alertmanagers")
        active = found.json()["data"]["activeAlertmanagers"]
        series = await stack.prometheus_query(signals.drift)
        return True if active and series else None

    await eventually(ready, timeout=20, what="Prometheus to find Alertmanager and the exporter")

    # 1. The drift goes up; the rule fires; the alert reaches runbookd through Alertmanager.
    await wait_for_raise_window()
    raised = time.monotonic()
    exporter.set(signals.drift, 0.35)

    async def execution() -> dict[str, Any] | None:
        page = await stack.api(f"/api/v1/executions?runbook={RUNBOOK}")
        return page["items"][0] if page["items"] else None

    created = await eventually(execution, timeout=70, what="the alert to start an execution",
                               interval=0.25)
    execution_id = created["id"]
    arrived = time.monotonic() - raised
    assert created["target"] == f"model:{model}"
    assert created["params"] == {"model": model, "env": "production"}

    # 2. The safe checks run on their own; the rollback waits for a human.
    async def awaiting_rollback() -> dict[str, Any] | None:
        detail = await stack.detail(execution_id)
        assert detail["status"] not in ("cancelled", "failed"), detail["status_reason"]
        steps = {s["step_id"]: s for s in detail["steps"]}
        if detail["status"] == "awaiting_approval" and RISKY_STEP in steps:
            return detail
        return None

    detail = await eventually(awaiting_rollback, timeout=30,
                              what="the rollback to await approval")
    for safe in SAFE_STEPS:
        assert step_of(detail, safe)["status"] == "succeeded", step_of(detail, safe)
    assert step_of(detail, "read-champion")["output"]["version"] == newer
    assert step_of(detail, RISKY_STEP)["status"] == "awaiting_approval"
    [alert] = detail["alerts"]
    assert alert["source"] == "alertmanager" and alert["status"] == "firing"
    assert alert["labels"]["alertname"] == "ModelDrift"
    assert alert["labels"]["registry"] == "mlflow" and alert["labels"]["model"] == model
    assert await stack.champion(model) == newer, "a risky step ran before its approval"

    # 3. alice approves through the API; the alias rolls back to the older version.
    answer = await stack.approve(execution_id, RISKY_STEP)
    assert answer.status_code == 200, answer.text

    async def rolled_back() -> str | None:
        version = await stack.champion(model)
        return version if version == older else None

    await eventually(rolled_back, timeout=20, what="champion to move back to the older version")

    # 4. The drift falls; the verification (a Prometheus query) passes.
    exporter.set(signals.drift, 0.02)

    async def verified() -> dict[str, Any] | None:
        detail = await stack.detail(execution_id)
        assert detail["status"] not in ("cancelled", "failed"), detail["status_reason"]
        rollback = step_of(detail, RISKY_STEP)
        if rollback["status"] == "succeeded":
            return detail
        assert rollback["status"] == "running", rollback
        return None

    detail = await eventually(verified, timeout=20, what="the rollback's verification")
    rollback = step_of(detail, RISKY_STEP)
    assert rollback["output"]["from"] == newer and rollback["output"]["to"] == older
    assert rollback["output"]["verify"]["holds"] is True
    assert rollback["output"]["verify"]["worst"]["value"] == 0.02

    # The runbook then plans the retraining run before it asks anyone: this stack has no
    # Airflow (RUNBOOKD_AIRFLOW_URL is unset), so there is no plan and nobody is asked to
    # approve a step that cannot run; the runbook says `on_failure: continue`. (The drills in
    # tests/e2e/drills/ run it against a real Airflow.)
    async def finished() -> dict[str, Any] | None:
        detail = await stack.detail(execution_id)
        return detail if detail["status"] not in ("pending", "running",
                                                  "awaiting_approval") else None

    detail = await eventually(finished, timeout=15, what="the execution to end")
    assert detail["status"] == "succeeded", (detail["status"], detail["status_reason"])
    retrain = step_of(detail, RETRAIN_STEP)
    assert retrain["status"] == "failed" and "no Airflow URL" in (retrain["error"] or "")
    assert retrain["approvals"] == [] and retrain["plan"] is None

    # 5. Alertmanager sends the resolved: the same alert row becomes resolved.
    async def resolved() -> dict[str, Any] | None:
        page = await stack.api("/api/v1/alerts?status=resolved")
        return page["items"][0] if page["items"] else None

    resolved_alert = await eventually(resolved, timeout=40, what="the resolved notification",
                                      interval=0.25)
    assert resolved_alert["id"] == alert["id"]
    assert resolved_alert["fingerprint"] == alert["fingerprint"]
    assert len((await stack.api("/api/v1/alerts"))["items"]) == 1

    # 6. Succeeded, with a complete timeline and a postmortem draft.
    detail = await stack.detail(execution_id)
    assert detail["status"] == "succeeded", "the late resolve must not touch a finished run"
    assert await stack.champion(model) == older
    states = [e["to_state"] for e in detail["timeline"] if e["kind"] == "execution.state"]
    assert states[0] == "running" and states[-1] == "succeeded", states
    assert states.count("awaiting_approval") == 1, states  # the rollback; not the retraining
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds[0] == "execution.created"
    approvals = [e for e in detail["timeline"] if e["kind"] == "approval.approve"]
    assert [(e["step_id"], e["actor"]) for e in approvals] == [(RISKY_STEP, "alice")]
    assert kinds.index("approval.approve") > kinds.index("execution.created")
    assert [a["identity"] for a in detail["approvals"]] == ["alice"]
    assert [s["step_id"] for s in detail["steps"]] == [*SAFE_STEPS, RISKY_STEP, RETRAIN_STEP]

    answer = await stack.http.get(
        f"{stack.runbookd}/api/v1/executions/{execution_id}/postmortem",
        headers=auth(stack.tokens["victor"]))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/markdown")
    markdown = answer.text
    assert markdown.startswith(f"# Postmortem: drift on {model} (production, MLflow)")
    assert "Move the MLflow alias champion back to the previous verified version: succeeded" \
        in markdown
    assert (f"roll back alias champion of MLflow model {model} from version {newer} to "
            f"version {older}") in markdown
    assert "**alice** approved via api" in markdown
    assert "- ModelDrift (alertmanager, resolved)" in markdown
    assert "execution: running → succeeded" in markdown
    print(f"\nreal stack: alert reached runbookd {arrived:.0f}s after the drift went up")
