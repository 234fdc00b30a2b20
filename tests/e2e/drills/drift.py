"""What the drills of the drift runbooks share (model-drift, model-drift-mlflow,
model-drift-recalibrate): the series a healthy model serves, an alert that fires and later
resolves (the same startsAt, so runbookd sees one alert), and the Airflow runs they leave."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.drills.harness import Shipped, labels_text
from tests.support import wait
from tests.support.airflow import AirflowPeer
from tests.support.auth import WEBHOOK_HEADERS
from tests.support.payloads import GO_ZERO, am_alert, am_body, go_json


def drift_series(model: str, env: str, *, drift: float) -> tuple[dict[str, float],
                                                                   dict[str, float]]:
    """(gauges, counters) of a model whose triage passes: features materialized now, 0.1%
    of its inputs invalid, 0.2% of its requests failing, and this drift score."""
    labels = {"model": model, "env": env}
    gauges = {
        f"ml_model_drift_score{labels_text(labels)}": drift,
        # Materialized at collection: fresh for the hour the checks allow.
        "ml_feature_last_materialized_timestamp_seconds"
        f"{labels_text({'model': model, 'feature_view': f'{model}_7d'})}": time.time(),
    }
    served = {**labels, "version": "3", "variant": "champion"}
    counters = {
        f"ml_input_rows_total{labels_text(labels)}": 100.0,
        f"ml_input_validation_failures_total{labels_text({**labels, 'check': 'schema'})}": 0.1,
        f"ml_serving_requests_total{labels_text({**served, 'code': '200'})}": 50.0,
        f"ml_serving_requests_total{labels_text({**served, 'code': '503'})}": 0.1,
    }
    return gauges, counters


@dataclass
class Alert:
    """One Alertmanager alert: it fires, and resolves with the same startsAt (runbookd keys an
    alert on its fingerprint and startsAt, as Alertmanager sends them)."""

    labels: dict[str, str]
    starts_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"))

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.labels, sort_keys=True).encode()).hexdigest()[:16]

    async def post(self, runbookd: Shipped, status: str) -> None:
        ends_at = (dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                   if status == "resolved" else GO_ZERO)
        alert = am_alert(self.fingerprint, status=status, labels=self.labels,
                         starts_at=self.starts_at, ends_at=ends_at,
                         annotations={"summary": f"drill of {self.labels['alertname']}"})
        answer = await runbookd.http.post("/webhooks/alertmanager",
                                          content=go_json(am_body(alert)),
                                          headers=WEBHOOK_HEADERS)
        assert answer.status_code == 200, answer.text

    async def fire(self, runbookd: Shipped) -> None:
        await self.post(runbookd, "firing")

    async def resolve(self, runbookd: Shipped) -> None:
        await self.post(runbookd, "resolved")


async def execution_after(runbookd: Shipped, runbook: str, known: set[int], *,
                          timeout: float = 15) -> dict[str, Any]:
    """The newest execution of `runbook` whose id is not in `known` (a second alert's)."""
    async def started() -> dict[str, Any] | None:
        items = (await runbookd.api("/api/v1/executions"))["items"]
        new = [e for e in items if e["id"] not in known and e["runbook_id"] == runbook]
        return new[0] if new else None

    return await wait.eventually(started, timeout=timeout, what=f"a new execution of {runbook}")


async def resolved_and_kept(runbookd: Shipped, execution_id: int, *,
                            timeout: float = 15) -> dict[str, Any]:
    """Until the execution records that every alert resolved and a step kept it going."""
    async def recorded() -> dict[str, Any] | None:
        detail = await runbookd.detail(execution_id)
        kept = [e for e in detail["timeline"] if e["kind"] == "alert.resolved"]
        return detail if kept else None

    return await wait.eventually(recorded, timeout=timeout,
                                 what=f"execution {execution_id} to see its alert resolve")


async def runs_of(airflow: AirflowPeer, dag_id: str, model: str) -> list[dict[str, Any]]:
    """The runs of `dag_id` for `model` (by conf): Airflow is shared by the session's drills."""
    return [run for run in await airflow.dag_runs(dag_id)
            if (run.get("conf") or {}).get("model") == model]


async def delete_runs(airflow: AirflowPeer, dag_id: str, model: str) -> None:
    """Delete this model's runs: each drill's runbookd numbers its executions from 1, so the
    next drill's run runbookd-1-<step> must not meet this one's (a different conf: refused)."""
    async with airflow.api() as http:
        for run in await runs_of(airflow, dag_id, model):
            # Airflow deletes no running run: let it end first.
            await airflow.wait_for_state(dag_id, run["dag_run_id"], timeout=60)
            answer = await http.delete(f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}")
            assert answer.status_code in (204, 404), answer.text
