"""A training DAG whose `train` task fails on its first try only, as a preempted node does:
the drill of training-pipeline-failed clears it and the rerun succeeds. Its id starts with
`train_` so that the shipped mapping (dag_id=~"retrain_.*|train_.*") takes its alert. Its
first task always succeeds, so clearing only the failed tasks must leave it alone (try 1)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="train_drill_flaky", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     tags=["runbookd-tests", "drills"])
def train_drill_flaky() -> None:
    @task(retries=0)
    def load_features() -> None:
        pass

    @task(retries=0)
    def train() -> int:
        tries = get_current_context()["ti"].try_number
        if tries <= 1:
            raise RuntimeError("first try fails (a runbookd drill DAG); clear it to re-run")
        return tries

    load_features() >> train()


train_drill_flaky()
