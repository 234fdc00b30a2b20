"""Drill of training-pipeline-failed: real Prometheus, real Airflow 3.

A run of train_drill_flaky fails on its first try (its `train` task raises, as a preempted node
does). The drill fires the alert the StatsD exporter would, lets the checks run, reads the plan
(Airflow's own list of what it would clear), approves it, and finds in Airflow that only the
failed task was cleared and that the rerun succeeded; then the exporter reports the success,
which the step verifies.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.drills.harness import declare_series, labels_text, step_of

pytestmark = pytest.mark.e2e

RUNBOOK = "training-pipeline-failed"
DAG = "train_drill_flaky"
PIPELINE = labels_text({"pipeline": DAG})
SUCCESS = f"ml_pipeline_last_success_timestamp_seconds{PIPELINE}"
FAILURE = f"ml_pipeline_last_failure_timestamp_seconds{PIPELINE}"
STARTED = time.time()

declare_series(gauges={
    # No OOM kill (a series that says 0, not a missing one), the input landed an hour ago.
    "kube_pod_container_status_last_terminated_reason" + labels_text({
        "namespace": "ml-training", "reason": "OOMKilled", "pod": "train-drill-flaky-0"}): 0,
    "ml_dataset_last_partition_timestamp_seconds" + PIPELINE: STARTED - 3600,
    # The last success was yesterday; the failure is this run's.
    SUCCESS: STARTED - 86400,
    FAILURE: STARTED,
}, counters={
    "ml_pipeline_runs_total" + labels_text({"pipeline": DAG, "status": "failed"}): 0,
})


async def test_the_failed_task_is_cleared_and_the_rerun_succeeds(platform, airflow,
                                                                 shipped) -> None:
    await airflow.parsed(DAG)
    run_id = f"nightly_{time.time_ns()}"
    await airflow.peer.trigger(DAG, run_id)
    assert await airflow.peer.wait_for_state(DAG, run_id) == "failed"
    before = await airflow.peer.task_instances(DAG, run_id)
    assert {t: (ti["state"], ti["try_number"]) for t, ti in before.items()} == {
        "load_features": ("success", 1), "train": ("failed", 1)}

    async with shipped(platform, airflow) as runbookd:
        await runbookd.fire({"alertname": "TrainingRunFailed", "team": "ml-training",
                             "severity": "warning", "dag_id": DAG, "run_id": run_id})
        execution = await runbookd.execution_of(RUNBOOK)
        assert execution["target"] == f"pipeline:{DAG}"

        rerun = await runbookd.awaiting(execution["id"], "rerun-failed-tasks")
        # Airflow's own answer to "what would be cleared": the failed task only.
        assert rerun["plan"]["summary"] == (
            f"clear 1 failed task instance(s) of run {run_id} of {DAG} on "
            f"{airflow.peer.host}: train (the run goes back to queued)")
        assert (await airflow.peer.dag_run(DAG, run_id))["state"] == "failed", \
            "cleared before approval"
        await runbookd.approve(execution["id"], "rerun-failed-tasks")

        # The rerun, in Airflow (the clear put the run back to queued); then the exporter
        # reports it, as the StatsD exporter does.
        await runbookd.wait_step(execution["id"], "rerun-failed-tasks", "succeeded")
        assert await airflow.peer.wait_for_state(DAG, run_id, timeout=45) == "success"
        platform.set(SUCCESS, time.time())
        detail = await runbookd.finished(execution["id"], timeout=60)

    assert detail["status"] == "succeeded", detail["status_reason"]
    assert [s["ref"] for s in detail["steps"]] == [
        "check-oom", "check-input", "check-repeat", "rerun-failed-tasks", "wait-for-rerun"]
    assert all(s["status"] == "succeeded" for s in detail["steps"]), detail["steps"]
    assert step_of(detail, "rerun-failed-tasks")["output"]["cleared"] == ["train"]
    waited = step_of(detail, "wait-for-rerun")
    assert (waited["output"]["state"], waited["output"]["verify"]["holds"]) == ("success", True)
    # The effect in Airflow: the failed task ran again and succeeded; the task that had
    # succeeded was left alone (one try), and the same run (same id) ended success.
    after = await airflow.peer.task_instances(DAG, run_id)
    assert {t: (ti["state"], ti["try_number"]) for t, ti in after.items()} == {
        "load_features": ("success", 1), "train": ("success", 2)}
    assert await airflow.peer.xcom(DAG, run_id, "train") == 2
    assert [r["dag_run_id"] for r in await airflow.peer.dag_runs(DAG)].count(run_id) == 1
