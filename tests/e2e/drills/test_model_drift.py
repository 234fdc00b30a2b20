"""Drill of model-drift: real Prometheus, the embedded file registry, real Airflow 3.

champion went 1 → 2 → 3 and version 3 drifts. The drill lets the triage run, approves the
rollback whose plan says 3 → 2, lowers the drift so the verification passes, resolves the
alert (the retraining step survives: on_resolve continue), approves the retraining and finds
its DAG run in Airflow. CI then promotes a version 4 that drifts within the hour: its drift
gets its rollback, but its retraining is skipped, the model's budget (1 per 6 h, shared by
every runbook that retrains) being spent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.actions.embedded_registry import ModelRegistry
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

RUNBOOK = "model-drift"
MODEL, ENV = "drift-embedded", "production"
DRIFT = f"ml_model_drift_score{labels_text({'model': MODEL, 'env': ENV})}"
LABELS = {"alertname": "ModelDrift", "severity": "critical", "team": "ml-platform",
          "model": MODEL, "env": ENV}
CONF = {"model": MODEL, "env": ENV, "window": "30d", "reason": "drift"}
LAST_GOOD = "(the last version that held it; its manifest verifies)"

declare_series(**dict(zip(("gauges", "counters"), drift_series(MODEL, ENV, drift=0.35),
                          strict=True)))


def make_registry(root: Path) -> ModelRegistry:
    registry = ModelRegistry(root)
    for version in ("1", "2", "3", "4"):
        registry.add_version(MODEL, version, {
            "model.bin": f"weights of version {version}".encode() * 50,
            "config.json": json.dumps({"version": int(version)}).encode()})
    for version in ("1", "2", "3"):
        registry.set_alias(MODEL, "champion", version, reason=f"release {version}")
    return registry


@pytest.fixture
async def retrain_runs(airflow):
    """This model's retraining runs are deleted after the drill (see delete_runs)."""
    await airflow.parsed("retrain_model")
    yield
    await delete_runs(airflow.peer, "retrain_model", MODEL)


async def test_drift_rolls_back_retrains_once_and_skips_a_second_retraining_within_6h(
        platform, airflow, retrain_runs, shipped, registry_dir: Path) -> None:
    registry = make_registry(registry_dir)
    async with shipped(platform, airflow) as runbookd:
        first = Alert(LABELS)
        await first.fire(runbookd)
        execution = await runbookd.execution_of(RUNBOOK)
        ex = execution["id"]
        assert execution["target"] == f"model:{MODEL}"

        # The triage runs alone; the rollback waits for an approver, with the move resolved.
        rollback = await runbookd.awaiting(ex, "rollback-champion")
        assert rollback["plan"]["summary"] == f"champion of {MODEL}: version 3 → version 2 " \
                                              f"{LAST_GOOD}"
        assert registry.get_alias(MODEL, "champion").version == "3", "moved before approval"
        detail = await runbookd.detail(ex)
        for check in ("check-freshness", "check-inputs", "check-serving"):
            assert step_of(detail, check)["status"] == "succeeded", step_of(detail, check)
            assert step_of(detail, check)["output"]["count"] == 1, f"{check} saw no series"
        assert step_of(detail, "read-champion")["output"]["version"] == "3"

        # The rollback clears the drift (here: the exporter says so), and runbookd checks it.
        platform.set(DRIFT, 0.04)
        await platform.wait_until(f"max({DRIFT})", lambda v: v < 0.1, what="the drift to fall")
        await runbookd.approve(ex, "rollback-champion")
        retraining = await runbookd.awaiting(ex, "queue-retraining")
        assert registry.get_alias(MODEL, "champion").version == "2"
        assert retraining["plan"]["summary"] == (
            f"trigger retrain_model with conf {json.dumps(CONF, sort_keys=True)} as run "
            f"runbookd-{ex}-queue-retraining on {airflow.peer.host}")

        # The fix resolves its own alert; the retraining step keeps the execution going.
        await first.resolve(runbookd)
        kept = await resolved_and_kept(runbookd, ex)
        assert kept["status"] == "awaiting_approval", kept["status_reason"]
        [resolved] = [e for e in kept["timeline"] if e["kind"] == "alert.resolved"]
        assert "step queue-retraining says on_resolve: continue" in resolved["reason"]
        await runbookd.approve(ex, "queue-retraining")
        detail = await runbookd.finished(ex)
        assert detail["status"] == "succeeded", detail["status_reason"]

        # CI promotes version 4; it drifts within the hour: a second execution.
        registry.set_alias(MODEL, "champion", "4", reason="release 4 (CI)")
        platform.set(DRIFT, 0.31)
        second = Alert({**LABELS})
        await second.fire(runbookd)
        again = await execution_after(runbookd, RUNBOOK, {ex})
        rollback = await runbookd.awaiting(again["id"], "rollback-champion")
        assert rollback["plan"]["summary"] == f"champion of {MODEL}: version 4 → version 2 " \
                                              f"{LAST_GOOD}"
        platform.set(DRIFT, 0.05)
        await platform.wait_until(f"max({DRIFT})", lambda v: v < 0.1, what="the drift to fall")
        await runbookd.approve(again["id"], "rollback-champion")
        detail_again = await runbookd.finished(again["id"])

    # The first execution: rolled back, verified, retraining queued in Airflow.
    done = step_of(detail, "rollback-champion")
    assert (done["status"], done["output"]["from"], done["output"]["to"]) == (
        "succeeded", "3", "2")
    assert done["output"]["verify"]["holds"] is True
    queued = step_of(detail, "queue-retraining")
    assert queued["status"] == "succeeded", queued["error"]
    run_id = f"runbookd-{ex}-queue-retraining"
    assert (queued["output"]["dag_run_id"], queued["output"]["triggered"]) == (run_id, True)
    run = await airflow.peer.dag_run("retrain_model", run_id)
    assert run is not None, f"no run {run_id} of retrain_model in Airflow"
    assert run["conf"] == CONF
    # ... and the DAG ran with it (its task returns the conf it got).
    assert await airflow.peer.wait_for_state("retrain_model", run_id) == "success"
    assert await airflow.peer.xcom("retrain_model", run_id, "train") == CONF

    # The second: its own rollback (4 → 2), but no second retraining within 6 hours.
    assert detail_again["status"] == "succeeded", detail_again["status_reason"]
    moved = step_of(detail_again, "rollback-champion")
    assert (moved["status"], moved["output"]["from"], moved["output"]["to"]) == (
        "succeeded", "4", "2")
    skipped = step_of(detail_again, "queue-retraining")
    assert skipped["status"] == "skipped", skipped
    assert skipped["summary"].startswith("skipped: "), skipped["summary"]
    assert "6h" in skipped["summary"], skipped["summary"]
    [limited] = [e for e in detail_again["timeline"] if e["kind"] == "step.rate_limited"]
    assert limited["data"]["rate_key"] == f"retrain:{MODEL}"
    assert limited["reason"] == skipped["summary"]
    assert [r["dag_run_id"] for r in await runs_of(airflow.peer, "retrain_model", MODEL)] == [
        run_id]
    # The registry's own record: both moves were runbookd's rollbacks.
    history = registry.history(MODEL, "champion")
    assert [(h.from_version, h.to_version, h.kind, h.execution_id) for h in history[-3:]] == [
        ("3", "2", "rollback", ex), ("2", "4", "set", None), ("4", "2", "rollback", again["id"])]
