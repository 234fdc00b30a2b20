"""Drill of model-artifact-corrupt-mlflow: a real MLflow, and Prometheus for the verifier's
metric, the artifact volume and the serving errors.

CI logged three versions (each with a manifest.json) and moved champion to 3 through MLflow's
API. Then version 3's weights were torn (a shorter file) and version 2's rewritten (same size,
other bytes). The rollback, with no runbookd history, looks at the newest older READY versions,
skips 2 (its manifest says the bytes changed) and goes to 1.
"""

from __future__ import annotations

import pytest

from tests.e2e.drills.harness import declare_series, labels_text, step_of

pytestmark = pytest.mark.e2e

RUNBOOK = "model-artifact-corrupt-mlflow"
MODEL = "corrupt-mlflow"
VERIFY_OK = f"ml_model_artifact_verify_ok{labels_text({'model': MODEL, 'alias': 'champion'})}"
VOLUME = {"namespace": "mlflow", "persistentvolumeclaim": "mlflow-artifacts"}
REQUESTS = "ml_serving_requests_total"

declare_series(
    gauges={
        VERIFY_OK: 0,  # the verifier CronJob found damaged files
        f"kubelet_volume_stats_used_bytes{labels_text(VOLUME)}": 70e9,
        f"kubelet_volume_stats_capacity_bytes{labels_text(VOLUME)}": 100e9,
    },
    counters={  # serving still answers from the model it loaded before: 0.25 % errors
        f"{REQUESTS}{labels_text({'model': MODEL, 'code': '200'})}": 40.0,
        f"{REQUESTS}{labels_text({'model': MODEL, 'code': '500'})}": 0.1,
    })


def weights(n: int) -> bytes:
    return f"weights of version {n}.".encode() * 100


async def test_corrupt_mlflow_champion_rolls_back_past_a_rewritten_version(
        platform, mlflow, shipped) -> None:
    runs = {}
    for n in (1, 2, 3):
        version, runs[n] = await mlflow.create_version(
            MODEL, {"model.bin": weights(n), "MLmodel": f"flavor: {n}\n".encode()})
        assert version == str(n)
    await mlflow.set_alias(MODEL, "champion", "3")
    await mlflow.corrupt(runs[3], "model.bin", weights(3)[:1000])
    await mlflow.corrupt(runs[2], "model.bin", weights(2).upper())
    await platform.wait_until(VERIFY_OK, lambda v: v == 0, what="the verifier's metric")

    async with shipped(platform, mlflow) as runbookd:
        await runbookd.fire({"alertname": "ModelArtifactCorrupt", "team": "ml-platform",
                             "registry": "mlflow", "model": MODEL, "alias": "champion"})
        execution = await runbookd.execution_of(RUNBOOK)
        assert execution["target"] == f"model:{MODEL}:champion"
        rollback = await runbookd.awaiting(execution["id"], "rollback-alias")
        summary = rollback["plan"]["summary"]
        assert summary.startswith(
            f"champion of {MODEL} (MLflow): version 3 → version 1 (newest older READY version; "
            "no runbookd history; its artifacts read back as MLflow lists them); skipped "
            "version 2: fails verification: model.bin: sha256 is "), summary
        assert await mlflow.alias(MODEL, "champion") == "3", "moved before approval"
        await runbookd.approve(execution["id"], "rollback-alias")
        await runbookd.wait_step(execution["id"], "rollback-alias", "succeeded")
        platform.set(VERIFY_OK, 1)  # the verifier's next run finds champion healthy
        detail = await runbookd.finished(execution["id"])

    assert detail["status"] == "succeeded", detail["status_reason"]
    damaged = step_of(detail, "verify-artifact")
    assert damaged["status"] == "failed"
    assert [(f["file"], f["problem"]) for f in damaged["output"]["failed"]] == [
        ("model.bin", "size")], damaged["output"]
    storage = step_of(detail, "check-storage")
    assert storage["status"] == "succeeded" and storage["output"]["worst"]["value"] == 0.7
    assert step_of(detail, "read-alias")["output"]["version"] == "3"
    done = step_of(detail, "rollback-alias")
    assert (done["output"]["from"], done["output"]["to"]) == ("3", "1")
    assert done["output"]["previous"] == "newest_older_ready"
    assert [s.split(":")[0] for s in done["output"]["skipped"]] == ["version 2"]
    verified = done["output"]["verify"]
    assert (verified["version"], verified["ok"], verified["files_checked"]) == ("1", True, 3)
    errors = step_of(detail, "check-serving-errors")
    assert errors["status"] == "succeeded", errors["error"]
    assert errors["output"]["count"] == 1 and errors["output"]["worst"]["value"] < 0.01
    # The effect on MLflow, read through its REST API.
    assert await mlflow.alias(MODEL, "champion") == "1"
