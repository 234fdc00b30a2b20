"""Drill of registry-quick-rollback-mlflow: a real MLflow, as teams run it.

CI logged three versions without a manifest.json and moved champion itself (1, then 3) through
MLflow's API: runbookd has no history of the alias. `previous` is then the newest older READY
version, 2, whose files read back as MLflow lists them (`manifest: run_artifacts`).
"""

from __future__ import annotations

import json

import httpx
import pytest

from app.actions.mlflow import HISTORY_TAG
from tests.e2e.drills.harness import MLFLOW_API, step_of

pytestmark = pytest.mark.e2e

RUNBOOK = "registry-quick-rollback-mlflow"
MODEL = "quick-mlflow"


async def test_quick_rollback_moves_the_mlflow_alias_ci_set_to_the_newest_older_version(
        mlflow, shipped) -> None:
    for n in (1, 2, 3):
        await mlflow.create_version(MODEL, {"model.pkl": f"weights {n}".encode() * 200,
                                            "MLmodel": f"flavor: {n}\n".encode()},
                                    with_manifest=False)
    await mlflow.set_alias(MODEL, "champion", "1")
    await mlflow.set_alias(MODEL, "champion", "3")

    async with shipped(mlflow) as runbookd:
        await runbookd.fire({"alertname": "ModelRollbackRequested", "model": MODEL,
                             "registry": "mlflow"})
        execution = await runbookd.execution_of(RUNBOOK)
        assert execution["target"] == f"model:{MODEL}:champion"
        rollback = await runbookd.awaiting(execution["id"], "rollback")
        assert rollback["plan"]["summary"] == (
            f"champion of {MODEL} (MLflow): version 3 → version 2 (newest older READY version; "
            "no runbookd history; its artifacts read back as MLflow lists them)")
        assert await mlflow.alias(MODEL, "champion") == "3", "moved before approval"
        await runbookd.approve(execution["id"], "rollback")
        detail = await runbookd.finished(execution["id"])

    assert detail["status"] == "succeeded", detail["status_reason"]
    assert step_of(detail, "read-alias")["output"]["version"] == "3"
    current = step_of(detail, "verify-current")
    assert current["status"] == "succeeded"
    assert current["output"]["files_checked"] == 2 and current["output"]["ok"] is True
    done = step_of(detail, "rollback")
    assert done["status"] == "succeeded"
    assert (done["output"]["from"], done["output"]["to"]) == ("3", "2")
    assert done["output"]["previous"] == "newest_older_ready"
    assert done["output"]["verify"]["version"] == "2" and done["output"]["verify"]["ok"]
    # The effect on MLflow, read through its REST API: the alias, and runbookd's history tag.
    assert await mlflow.alias(MODEL, "champion") == "2"
    async with httpx.AsyncClient(base_url=mlflow.url, timeout=10) as http:
        found = (await http.get(f"{MLFLOW_API}/registered-models/get",
                                params={"name": MODEL})).json()["registered_model"]
    tags = {t["key"]: t["value"] for t in found.get("tags", [])}
    history = [entry["v"] for entry in json.loads(tags[f"{HISTORY_TAG}champion"])]
    assert history == ["3", "2"], history  # what it found (seen), then its rollback

