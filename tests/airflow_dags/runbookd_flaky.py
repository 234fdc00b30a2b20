"""Fails on its first try only: a cleared (re-run) task instance succeeds. Its first task
always succeeds, so clearing only the failed tasks must leave it alone (try 1 stays)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="runbookd_flaky", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     tags=["runbookd-tests"])
def runbookd_flaky() -> None:
    @task(retries=0)
    def prepare() -> None:
        pass

    @task(retries=0)
    def train() -> int:
        tries = get_current_context()["ti"].try_number
        if tries <= 1:
            raise RuntimeError("first try fails (a runbookd test DAG); clear it to re-run")
        return tries

    prepare() >> train()


runbookd_flaky()
