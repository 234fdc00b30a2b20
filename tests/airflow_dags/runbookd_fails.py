"""Always fails: its one task raises, with no retries."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="runbookd_fails", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     tags=["runbookd-tests"])
def runbookd_fails() -> None:
    @task(retries=0)
    def broken() -> None:
        raise RuntimeError("this task always fails (a runbookd test DAG)")

    broken()


runbookd_fails()
