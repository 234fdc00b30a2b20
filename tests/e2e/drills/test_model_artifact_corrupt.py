"""Drill of model-artifact-corrupt: the embedded file registry, and Prometheus for the verifier's
metric, the artifact volume and the serving errors.

champion moved 1 → 2 → 3; then version 3 lost half of its weights (a torn upload) and version 2
was rewritten (same size, other bytes). The verifier reports champion damaged. The rollback's
`previous` skips version 2, which fails its manifest, and goes to version 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.actions.embedded_registry import ModelRegistry
from tests.e2e.drills.harness import declare_series, labels_text, step_of

pytestmark = pytest.mark.e2e

RUNBOOK = "model-artifact-corrupt"
MODEL = "corrupt-embedded"
VERIFY_OK = f"ml_model_artifact_verify_ok{labels_text({'model': MODEL, 'alias': 'champion'})}"
VOLUME = {"namespace": "ml-registry", "persistentvolumeclaim": "registry-data"}
REQUESTS = "ml_serving_requests_total"

declare_series(
    gauges={
        VERIFY_OK: 0,  # the verifier CronJob found damaged files
        f"kubelet_volume_stats_used_bytes{labels_text(VOLUME)}": 40e9,
        f"kubelet_volume_stats_capacity_bytes{labels_text(VOLUME)}": 100e9,
    },
    counters={  # serving still answers from the model it loaded before: 0.25 % errors
        f"{REQUESTS}{labels_text({'model': MODEL, 'code': '200'})}": 40.0,
        f"{REQUESTS}{labels_text({'model': MODEL, 'code': '500'})}": 0.1,
    })


def make_registry(root: Path) -> ModelRegistry:
    registry = ModelRegistry(root)
    for version in ("1", "2", "3"):
        registry.add_version(MODEL, version, {
            "model.bin": f"weights of version {version}.".encode() * 100,
            "config.json": json.dumps({"version": int(version)}).encode()})
        registry.set_alias(MODEL, "champion", version, reason="release")
    weights = registry.version_dir(MODEL, "3") / "model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])  # a torn upload
    rewritten = registry.version_dir(MODEL, "2") / "model.bin"
    rewritten.write_bytes(rewritten.read_bytes().upper())  # same size, other bytes
    return registry


async def test_corrupt_champion_rolls_back_past_a_damaged_version_to_one_that_verifies(
        platform, shipped, registry_dir: Path) -> None:
    registry = make_registry(registry_dir)
    await platform.wait_until(VERIFY_OK, lambda v: v == 0, what="the verifier's metric")
    async with shipped(platform) as runbookd:
        await runbookd.fire({"alertname": "ModelArtifactCorrupt", "team": "ml-platform",
                             "model": MODEL, "alias": "champion", "severity": "critical"})
        execution = await runbookd.execution_of(RUNBOOK)
        assert execution["target"] == f"model:{MODEL}:champion"
        rollback = await runbookd.awaiting(execution["id"], "rollback-alias")
        summary = rollback["plan"]["summary"]
        assert summary.startswith(
            f"champion of {MODEL}: version 3 → version 1 (the last version that held it; its "
            "manifest verifies); skipped version 2 (fails verification: model.bin"), summary
        assert registry.get_alias(MODEL, "champion").version == "3", "moved before approval"
        await runbookd.approve(execution["id"], "rollback-alias")
        await runbookd.wait_step(execution["id"], "rollback-alias", "succeeded")
        platform.set(VERIFY_OK, 1)  # the verifier's next run finds champion healthy
        detail = await runbookd.finished(execution["id"])

    assert detail["status"] == "succeeded", detail["status_reason"]
    damaged = step_of(detail, "verify-artifact")
    assert damaged["status"] == "failed"
    # (the embedded registry's manifest holds digests only: a torn file is a wrong sha256)
    assert [(f["file"], f["problem"]) for f in damaged["output"]["failed"]] == [
        ("model.bin", "sha256")], damaged["output"]
    storage = step_of(detail, "check-storage")
    assert storage["status"] == "succeeded" and storage["output"]["worst"]["value"] == 0.4
    assert step_of(detail, "list-versions")["output"]["versions"] == ["1", "2", "3"]
    done = step_of(detail, "rollback-alias")
    assert (done["output"]["from"], done["output"]["to"]) == ("3", "1")
    assert [s["version"] for s in done["output"]["skipped"]] == ["2"]
    assert done["output"]["verify"]["ok"] is True and done["output"]["verify"]["version"] == "1"
    errors = step_of(detail, "check-serving-errors")
    assert errors["status"] == "succeeded", errors["error"]
    assert errors["output"]["count"] == 1 and errors["output"]["worst"]["value"] < 0.01
    # The effect on the registry: champion serves version 1; the damaged versions stay.
    assert registry.get_alias(MODEL, "champion").version == "1"
    assert registry.history(MODEL, "champion")[-1].kind == "rollback"
    assert registry.list_versions(MODEL) == ["1", "2", "3"]
    assert registry.verify(MODEL, "1") == []
