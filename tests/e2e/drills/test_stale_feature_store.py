"""Drill of stale-feature-store: real Prometheus, real Airflow 3.

The view drill_stale_view was last materialized two hours ago while its source is fresh. The
drill approves each risky step after reading its plan and checks its effect in Airflow: the
retraining DAG is paused, the backfill run exists with the view's conf and succeeds (then the
materializer's metric turns fresh, which the wait step verifies), and retraining resumes.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.drills.harness import declare_series, labels_text, step_of

pytestmark = pytest.mark.e2e

RUNBOOK = "stale-feature-store"
VIEW, RETRAIN, BACKFILL = "drill_stale_view", "retrain_drill_stale", "feature_backfill"
OF_VIEW = labels_text({"feature_view": VIEW})
MATERIALIZED = f"ml_feature_last_materialized_timestamp_seconds{OF_VIEW}"
STARTED = time.time()

declare_series(gauges={
    # Two hours behind (the precondition's subquery must see it: declared up front).
    MATERIALIZED: STARTED - 7200,
    f"ml_source_last_updated_timestamp_seconds{OF_VIEW}": STARTED - 300,
})


async def test_retraining_is_paused_the_view_backfilled_and_retraining_resumed(
        platform, airflow, shipped) -> None:
    await airflow.parsed(BACKFILL, RETRAIN)
    await airflow.peer.set_paused(RETRAIN, False)
    await platform.subqueries_see_series()
    host = airflow.peer.host

    async with shipped(platform, airflow) as runbookd:
        await runbookd.fire({"alertname": "FeatureViewStale", "severity": "warning",
                             "feature_view": VIEW, "retrain_dag": RETRAIN})
        execution = await runbookd.execution_of(RUNBOOK)
        ex = execution["id"]
        run_id = f"runbookd-{ex}-backfill"

        pause = await runbookd.awaiting(ex, "pause-retraining")
        assert pause["plan"]["summary"] == f"pause DAG {RETRAIN} on {host}: unpaused → paused"
        assert not await airflow.peer.is_paused(RETRAIN)
        await runbookd.approve(ex, "pause-retraining")

        backfill = await runbookd.awaiting(ex, "backfill")
        assert await airflow.peer.is_paused(RETRAIN), "the pause did not reach Airflow"
        conf = {"feature_view": VIEW, "lookback": "24h"}
        assert backfill["plan"]["summary"] == (
            f"trigger {BACKFILL} with conf {json.dumps(conf, sort_keys=True)} as run "
            f"{run_id} on {host}")
        assert await airflow.peer.dag_run(BACKFILL, run_id) is None, "triggered before approval"
        await runbookd.approve(ex, "backfill")

        # The backfill run in Airflow; then the materializer's metric turns fresh.
        assert await airflow.peer.wait_for_state(BACKFILL, run_id, timeout=45) == "success"
        platform.set(MATERIALIZED, time.time())

        resume = await runbookd.awaiting(ex, "resume-retraining", timeout=45)
        assert resume["plan"]["summary"] == f"unpause DAG {RETRAIN} on {host}: paused → unpaused"
        assert await airflow.peer.is_paused(RETRAIN), "resumed before approval"
        await runbookd.approve(ex, "resume-retraining")
        detail = await runbookd.finished(ex)

    assert detail["status"] == "succeeded", detail["status_reason"]
    assert [s["ref"] for s in detail["steps"]] == [
        "check-materializer", "pause-retraining", "check-source", "backfill",
        "wait-for-backfill", "resume-retraining"]
    assert all(s["status"] == "succeeded" for s in detail["steps"]), detail["steps"]
    assert step_of(detail, "backfill")["output"]["dag_run_id"] == run_id
    waited = step_of(detail, "wait-for-backfill")
    assert (waited["output"]["state"], waited["output"]["verify"]["holds"]) == ("success", True)
    # The effects in Airflow: one backfill run, named after the execution, with the view's
    # conf (which its task received), succeeded; retraining runs again.
    run = await airflow.peer.dag_run(BACKFILL, run_id)
    assert (run["state"], run["conf"]) == ("success", conf)
    assert await airflow.peer.xcom(BACKFILL, run_id, "materialize") == conf
    assert [r["dag_run_id"] for r in await airflow.peer.dag_runs(BACKFILL)
            if r["dag_run_id"].startswith(f"runbookd-{ex}-")] == [run_id]
    assert not await airflow.peer.is_paused(RETRAIN)
