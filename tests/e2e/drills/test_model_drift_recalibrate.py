"""Drill of model-drift-recalibrate: real Prometheus, the embedded file registry, real Airflow 3.

champion is version 2 and drifts mildly (PSI 0.15) with a calibration error of 0.09. The drill
lets the triage run, approves the recalibration whose plan names the DAG run and its conf, and
the test DAG recalibrate_model does what the real one does on a shared-volume registry: it
registers version 3 (version 2's files and a calibrator, with a manifest) and points champion
at it. runbookd waits for that run to end before it reads the calibration error, which the
new champion brings under 0.05.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.actions.embedded_registry import ModelRegistry
from tests.e2e.drills.drift import Alert, delete_runs, drift_series
from tests.e2e.drills.harness import declare_series, labels_text, step_of
from tests.support import wait

pytestmark = pytest.mark.e2e

RUNBOOK, DAG = "model-drift-recalibrate", "recalibrate_model"
MODEL, ENV = "drift-recalibrate", "production"
CALIBRATION = f"ml_model_calibration_error{labels_text({'model': MODEL, 'env': ENV})}"
LABELS = {"alertname": "ModelDrift", "severity": "warning", "team": "ml-platform",
          "model": MODEL, "env": ENV}
CONF = {"model": MODEL, "env": ENV, "base_version": "2", "window": "7d",
        "promote_alias": "champion", "reason": "mild-drift"}

_gauges, _counters = drift_series(MODEL, ENV, drift=0.15)
declare_series(gauges={**_gauges, CALIBRATION: 0.09,
                       f"ml_labels_last_ingested_timestamp_seconds{labels_text({'model': MODEL})}":
                       time.time()},
               counters=_counters)


@pytest.fixture
async def recalibration_dag(airflow, registry_dir: Path):
    """The DAG promotes in this drill's registry; its runs and that setting go afterwards."""
    await airflow.parsed(DAG)
    await airflow.set_variable("runbookd_registry_dir", str(registry_dir))
    yield
    await airflow.set_variable("runbookd_registry_dir", None)
    await delete_runs(airflow.peer, DAG, MODEL)


async def test_recalibration_runs_in_airflow_promotes_a_version_and_is_verified_after_it_ends(
        platform, airflow, recalibration_dag, shipped, registry_dir: Path) -> None:
    registry = ModelRegistry(registry_dir)
    for version in ("1", "2"):
        registry.add_version(MODEL, version, {
            "model.bin": f"weights of version {version}".encode() * 50,
            "config.json": json.dumps({"version": int(version)}).encode()})
        registry.set_alias(MODEL, "champion", version, reason=f"release {version}")

    async with shipped(platform, airflow) as runbookd:
        await Alert(LABELS).fire(runbookd)
        execution = await runbookd.execution_of(RUNBOOK)
        ex = execution["id"]
        recalibrate = await runbookd.awaiting(ex, "recalibrate")
        run_id = f"runbookd-{ex}-recalibrate"
        assert recalibrate["plan"]["summary"] == (
            f"trigger {DAG} with conf {json.dumps(CONF, sort_keys=True)} as run {run_id} on "
            f"{airflow.peer.host}")
        assert await airflow.peer.dag_run(DAG, run_id) is None, "triggered before approval"
        detail = await runbookd.detail(ex)
        for check in ("check-freshness", "check-labels"):
            assert step_of(detail, check)["output"]["count"] == 1, f"{check} saw no series"
        await runbookd.approve(ex, "recalibrate")

        # The DAG promotes version 3; the exporter then reports the new champion's calibration.
        async def promoted() -> bool:
            return registry.get_alias(MODEL, "champion").version == "3"

        await wait.eventually(promoted, timeout=60, what="the DAG to point champion at 3",
                              interval=0.5)
        platform.set(CALIBRATION, 0.03)
        detail = await runbookd.finished(ex, timeout=90)

    assert detail["status"] == "succeeded", detail["status_reason"]
    triggered = step_of(detail, "recalibrate")
    assert (triggered["output"]["dag_run_id"], triggered["output"]["triggered"]) == (run_id,
                                                                                     True)
    waited = step_of(detail, "wait-recalibration")
    assert waited["status"] == "succeeded", waited["error"]
    assert waited["output"]["state"] == "success"
    assert waited["output"]["verify"]["holds"] is True
    # The effect in Airflow: the run, its conf, what its task did.
    run = await airflow.peer.dag_run(DAG, run_id)
    assert run is not None and run["conf"] == CONF and run["state"] == "success"
    assert await airflow.peer.xcom(DAG, run_id, "recalibrate") == {"conf": CONF,
                                                                  "promoted": "3"}
    # ... and in the registry: champion at a version that verifies, holding the calibrator.
    assert registry.get_alias(MODEL, "champion").version == "3"
    assert registry.verify(MODEL, "3") == []
    assert (registry.version_dir(MODEL, "3") / "calibrator.json").is_file()
    assert [(h.from_version, h.to_version) for h in registry.history(MODEL, "champion")] == [
        (None, "1"), ("1", "2"), ("2", "3")]
