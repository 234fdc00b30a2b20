"""Drill of prediction-skew: the embedded file registry, and Prometheus for the skew (PSI), the
input drift and the fallback answers.

champion moved 1 → 2, and the scores of version 2 skew (PSI 0.4) while the inputs do not drift
and serving answers no fallbacks. Two approvers decide: bob shadows version 2, alice rolls
champion back to 1. Then the skew falls (the real world's answer to the rollback) and the
verification passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.actions.embedded_registry import ModelRegistry
from tests.e2e.drills.harness import declare_series, labels_text, step_of

pytestmark = pytest.mark.e2e

RUNBOOK = "prediction-skew"
MODEL = "skewed-scores"
LABELS = labels_text({"model": MODEL, "env": "production"})
PSI = f"ml_prediction_psi{LABELS}"

declare_series(
    gauges={PSI: 0.4, f"ml_model_drift_score{LABELS}": 0.05},
    counters={f"ml_serving_requests_total{LABELS}": 40.0,
              f"ml_serving_fallback_predictions_total{LABELS}": 0.05})  # 0.125 % fallbacks


def make_registry(root: Path) -> ModelRegistry:
    registry = ModelRegistry(root)
    for version in ("1", "2"):
        registry.add_version(MODEL, version, {
            "model.bin": f"weights of version {version}".encode() * 100,
            "preprocess.json": json.dumps({"scale": int(version)}).encode()})
        registry.set_alias(MODEL, "champion", version, reason="release")
    return registry


async def test_skew_shadows_the_champion_rolls_it_back_and_verifies_the_skew_fell(
        platform, shipped, registry_dir: Path) -> None:
    registry = make_registry(registry_dir)
    await platform.wait_until(f"max_over_time({PSI}[6h])", lambda v: v == 0.4,
                              what="the skew in Prometheus")
    async with shipped(platform) as runbookd:
        await runbookd.fire({"alertname": "PredictionSkew", "severity": "warning",
                             "model": MODEL, "env": "production"})
        execution = await runbookd.execution_of(RUNBOOK)
        assert execution["target"] == f"model:{MODEL}"

        shadow = await runbookd.awaiting(execution["id"], "shadow-champion")
        assert shadow["plan"]["summary"] == f"shadow of {MODEL}: (unset) → version 2"
        await runbookd.approve(execution["id"], "shadow-champion", who="bob")

        rollback = await runbookd.awaiting(execution["id"], "rollback-champion")
        assert rollback["plan"]["summary"] == (
            f"champion of {MODEL}: version 2 → version 1 (the last version that held it; its "
            "manifest verifies)")
        assert registry.get_alias(MODEL, "champion").version == "2", "moved before approval"
        await runbookd.approve(execution["id"], "rollback-champion")
        await runbookd.wait_step(execution["id"], "rollback-champion", "running")
        # The rolled-back version scores like its baseline again.
        platform.set(PSI, 0.05)
        detail = await runbookd.finished(execution["id"], timeout=60)

    assert detail["status"] == "succeeded", detail["status_reason"]
    drift = step_of(detail, "check-input-drift")
    assert drift["status"] == "succeeded" and drift["output"]["worst"]["value"] == 0.05
    fallbacks = step_of(detail, "check-fallbacks")
    assert fallbacks["status"] == "succeeded" and fallbacks["output"]["count"] == 1
    assert fallbacks["output"]["worst"]["value"] < 0.01
    assert step_of(detail, "read-champion")["output"]["version"] == "2"
    assert step_of(detail, "shadow-champion")["status"] == "succeeded"
    done = step_of(detail, "rollback-champion")
    assert done["status"] == "succeeded"
    assert (done["output"]["from"], done["output"]["to"]) == ("2", "1")
    assert done["output"]["verify"]["holds"] is True
    assert done["output"]["verify"]["worst"]["value"] == 0.05
    assert [(a["identity"], a["decision"]) for a in detail["approvals"]] == [
        ("bob", "approve"), ("alice", "approve")]
    # The effect on the registry: the skewed version is the shadow, champion is back on 1.
    assert registry.aliases(MODEL) == {"champion": "1", "shadow": "2"}
    assert [(h.from_version, h.to_version, h.kind) for h in registry.history(MODEL, "champion")
            ][-1] == ("2", "1", "rollback")
