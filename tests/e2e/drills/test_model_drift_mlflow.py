"""Drill of model-drift-mlflow: real Prometheus, real MLflow, real Airflow 3.

CI logged versions 1-3 without a manifest.json and moved champion to 3 itself, so runbookd has
no history of the alias: the rollback's `previous` is the newest older READY version, 2, whose
files read back as MLflow lists them. The drill approves that plan, lowers the drift so the
verification passes, resolves the alert (the retraining survives: on_resolve continue),
approves the retraining and finds its DAG run in Airflow. Then CI promotes a version 4 that
drifts within the hour: it is rolled back too, but its retraining is skipped (the model's
budget of 1 per 6 h, shared by every runbook that retrains, is spent).
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.drills.drift import (
    Alert,
    delete_runs,
    drift_series,
    execution_after,
    resolved_and_kept,
    runs_of,
)
from tests.e2e.drills.harness import declare_series, labels_text, step_of

pytestmark = pytest.mark.e2e

RUNBOOK = "model-drift-mlflow"
MODEL, ENV = "drift-mlflow", "production"
DRIFT = f"ml_model_drift_score{labels_text({'model': MODEL, 'env': ENV})}"
LABELS = {"alertname": "ModelDrift", "severity": "critical", "team": "ml-platform",
          "registry": "mlflow", "model": MODEL, "env": ENV}
CONF = {"model": MODEL, "env": ENV, "window": "30d", "reason": "drift", "registry": "mlflow"}
NEWEST_OLDER = ("(newest older READY version; no runbookd history; its artifacts read back as "
                "MLflow lists them)")

declare_series(**dict(zip(("gauges", "counters"), drift_series(MODEL, ENV, drift=0.35),
                          strict=True)))


async def logged(mlflow, n: int) -> str:
    """A version as CI logs it: no manifest.json."""
    version, _ = await mlflow.create_version(MODEL, {"model.pkl": f"weights {n}".encode() * 200,
                                                     "MLmodel": f"flavor: {n}\n".encode()},
                                             with_manifest=False)
    return version


@pytest.fixture
async def retrain_runs(airflow):
    """This model's retraining runs are deleted after the drill (see delete_runs)."""
    await airflow.parsed("retrain_model")
    yield
    await delete_runs(airflow.peer, "retrain_model", MODEL)


async def test_mlflow_drift_rolls_back_retrains_once_and_skips_a_second_retraining_within_6h(
        platform, mlflow, airflow, retrain_runs, shipped) -> None:
    for n in (1, 2, 3):
        await logged(mlflow, n)
    await mlflow.set_alias(MODEL, "champion", "3")

    async with shipped(platform, mlflow, airflow) as runbookd:
        first = Alert(LABELS)
        await first.fire(runbookd)
        execution = await runbookd.execution_of(RUNBOOK)
        ex = execution["id"]
        rollback = await runbookd.awaiting(ex, "rollback-champion")
        assert rollback["plan"]["summary"] == (
            f"champion of {MODEL} (MLflow): version 3 → version 2 {NEWEST_OLDER}")
        assert await mlflow.alias(MODEL, "champion") == "3", "moved before approval"
        detail = await runbookd.detail(ex)
        for check in ("check-freshness", "check-inputs", "check-serving"):
            assert step_of(detail, check)["output"]["count"] == 1, f"{check} saw no series"

        platform.set(DRIFT, 0.04)
        await platform.wait_until(f"max({DRIFT})", lambda v: v < 0.1, what="the drift to fall")
        await runbookd.approve(ex, "rollback-champion")
        retraining = await runbookd.awaiting(ex, "queue-retraining")
        assert await mlflow.alias(MODEL, "champion") == "2"
        assert retraining["plan"]["summary"] == (
            f"trigger retrain_model with conf {json.dumps(CONF, sort_keys=True)} as run "
            f"runbookd-{ex}-queue-retraining on {airflow.peer.host}")

        await first.resolve(runbookd)
        kept = await resolved_and_kept(runbookd, ex)
        assert kept["status"] == "awaiting_approval", kept["status_reason"]
        await runbookd.approve(ex, "queue-retraining")
        detail = await runbookd.finished(ex)
        assert detail["status"] == "succeeded", detail["status_reason"]

        # CI registers and promotes version 4; it drifts within the hour.
        await mlflow.set_alias(MODEL, "champion", await logged(mlflow, 4))
        platform.set(DRIFT, 0.31)
        await Alert(LABELS).fire(runbookd)
        again = await execution_after(runbookd, RUNBOOK, {ex})
        rollback = await runbookd.awaiting(again["id"], "rollback-champion")
        assert rollback["plan"]["summary"].startswith(
            f"champion of {MODEL} (MLflow): version 4 → version 3 "), rollback["plan"]["summary"]
        platform.set(DRIFT, 0.05)
        await platform.wait_until(f"max({DRIFT})", lambda v: v < 0.1, what="the drift to fall")
        await runbookd.approve(again["id"], "rollback-champion")
        detail_again = await runbookd.finished(again["id"])

    done = step_of(detail, "rollback-champion")
    assert (done["status"], done["output"]["from"], done["output"]["to"]) == (
        "succeeded", "3", "2")
    assert done["output"]["verify"]["holds"] is True
    run_id = f"runbookd-{ex}-queue-retraining"
    assert step_of(detail, "queue-retraining")["output"]["dag_run_id"] == run_id
    run = await airflow.peer.dag_run("retrain_model", run_id)
    assert run is not None and run["conf"] == CONF
    assert await airflow.peer.wait_for_state("retrain_model", run_id) == "success"
    assert await airflow.peer.xcom("retrain_model", run_id, "train") == CONF

    assert detail_again["status"] == "succeeded", detail_again["status_reason"]
    assert step_of(detail_again, "rollback-champion")["status"] == "succeeded"
    assert await mlflow.alias(MODEL, "champion") == "3"
    skipped = step_of(detail_again, "queue-retraining")
    assert skipped["status"] == "skipped" and skipped["summary"].startswith("skipped: ")
    [limited] = [e for e in detail_again["timeline"] if e["kind"] == "step.rate_limited"]
    assert limited["data"]["rate_key"] == f"retrain:{MODEL}"
    assert [r["dag_run_id"] for r in await runs_of(airflow.peer, "retrain_model", MODEL)] == [
        run_id]
