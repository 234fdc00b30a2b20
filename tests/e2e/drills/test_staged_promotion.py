"""Drill of model-staged-promotion: a real MLflow and real Prometheus.

CI registered two versions of a model and made 1 champion; version 2 is the fix, requested for
promotion with a 10-second soak. The test plays the serving pods: once the challenger alias
points at the candidate, the candidate's requests show up in ml_serving_requests_total
(variant="challenger", version="2"), cleanly in one drill and with 20% errors in the other.
- clean: champion moves to version 2 after its approval, and the champion's traffic on version
  2 (which the test then starts, as the pods reload the alias) verifies the promotion;
- erring: the watch fails, the challenger goes back to version 1, and champion stays on 1.
Each drill asserts the aliases in MLflow, read through its REST API.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.drills.harness import (
    MLFLOW_API,
    MlflowPeer,
    Platform,
    Shipped,
    labels_text,
    step_of,
    steps_brief,
)

pytestmark = pytest.mark.e2e

RUNBOOK = "model-staged-promotion"
ENV = "production"


def requests(model: str, variant: str, code: str) -> str:
    return "ml_serving_requests_total" + labels_text(
        {"model": model, "env": ENV, "version": "2", "variant": variant, "code": code})


async def staged(mlflow: MlflowPeer, model: str) -> None:
    """Two versions as CI logs them; champion set by CI on version 1."""
    for n in (1, 2):
        await mlflow.create_version(model, {"model.pkl": f"{model} weights {n}".encode() * 200,
                                            "MLmodel": f"flavor: {n}\n".encode()},
                                    with_manifest=False)
    await mlflow.set_alias(model, "champion", "1")


async def request_promotion(runbookd: Shipped, model: str) -> dict[str, Any]:
    """Fire the request; the execution, up to the challenger's approval (its plan checked)."""
    await runbookd.fire({"alertname": "ModelPromotionRequested", "model": model,
                         "version": "2", "env": ENV, "soak": "10s"})
    execution = await runbookd.execution_of(RUNBOOK)
    assert execution["target"] == f"model:{model}:champion"
    challenger = await runbookd.awaiting(execution["id"], "set-challenger")
    assert challenger["plan"]["summary"] == (
        f"challenger of {model} (MLflow): (unset) → version 2")
    detail = await runbookd.detail(execution["id"])
    assert step_of(detail, "read-champion")["output"]["version"] == "1"
    candidate = step_of(detail, "verify-candidate")["output"]
    assert (candidate["version"], candidate["files_checked"], candidate["ok"]) == ("2", 2, True)
    return execution


async def test_a_candidate_that_holds_on_the_challenger_becomes_champion(
        mlflow: MlflowPeer, platform: Platform, shipped: Any) -> None:
    model = "staged-clean"
    await staged(mlflow, model)
    async with shipped(platform, mlflow) as runbookd:
        execution = await request_promotion(runbookd, model)
        await runbookd.approve(execution["id"], "set-challenger")
        # The serving pods reload the alias: the candidate answers the challenger's share,
        # without a single error (so it has no 5xx series at all, as a clean version).
        platform.count(requests(model, "challenger", "200"), 5.0)

        promote = await runbookd.awaiting(execution["id"], "promote", timeout=60)
        assert promote["plan"]["summary"] == (
            f"champion of {model} (MLflow): version 1 → version 2")
        assert await mlflow.alias(model, "challenger") == "2"
        assert await mlflow.alias(model, "champion") == "1", "promoted before approval"
        await runbookd.approve(execution["id"], "promote")
        # ...and once champion moves, they serve version 2 to everyone.
        platform.count(requests(model, "champion", "200"), 20.0)
        detail = await runbookd.finished(execution["id"], timeout=90)

    assert detail["status"] == "succeeded", (detail["status_reason"], steps_brief(detail))
    watch = step_of(detail, "watch-challenger")
    assert watch["status"] == "succeeded" and watch["output"]["attempts"] >= 2
    assert step_of(detail, "promote")["output"]["changed"] is True
    # on_success: end, so the challenger is not retired.
    assert [s["ref"] for s in detail["steps"]] == [
        "read-champion", "verify-candidate", "set-challenger", "watch-challenger", "promote"]
    # The effect in MLflow.
    assert await mlflow.alias(model, "champion") == "2"
    assert await mlflow.alias(model, "challenger") == "2"


async def test_a_candidate_that_errs_on_the_challenger_is_retired_and_champion_stays(
        mlflow: MlflowPeer, platform: Platform, shipped: Any) -> None:
    model = "staged-erring"
    await staged(mlflow, model)
    async with shipped(platform, mlflow) as runbookd:
        execution = await request_promotion(runbookd, model)
        await runbookd.approve(execution["id"], "set-challenger")
        # The candidate fails 20% of the challenger's requests.
        platform.count(requests(model, "challenger", "200"), 4.0)
        platform.count(requests(model, "challenger", "500"), 1.0)
        detail = await runbookd.finished(execution["id"], timeout=60)

    # The runbook did its job (the candidate never reached champion): the execution succeeds.
    assert detail["status"] == "succeeded", (detail["status_reason"], steps_brief(detail))
    watch = step_of(detail, "watch-challenger")
    assert watch["status"] == "failed"
    assert "did not hold within 10s" in watch["error"], watch["error"]
    assert watch["output"]["worst"]["value"] == pytest.approx(0.2, abs=0.05)
    retired = step_of(detail, "retire-challenger")
    assert retired["status"] == "succeeded"
    assert (retired["output"]["from"], retired["output"]["to"]) == ("2", "1")
    # The watch's failure went to retire-challenger: promote never ran.
    assert [s["ref"] for s in detail["steps"]] == [
        "read-champion", "verify-candidate", "set-challenger", "watch-challenger",
        "retire-challenger"]
    # The effect in MLflow: champion untouched, challenger back on the champion's version.
    assert await mlflow.alias(model, "champion") == "1"
    assert await mlflow.alias(model, "challenger") == "1"
    async with httpx.AsyncClient(base_url=mlflow.url, timeout=10) as http:
        found = (await http.get(f"{MLFLOW_API}/registered-models/get",
                                params={"name": model})).json()["registered_model"]
    assert {a["alias"]: a["version"] for a in found["aliases"]} == {"champion": "1",
                                                                    "challenger": "1"}
