"""Never triggered by any test: the DAG with no runs, for which `dag_run_id: "@latest"` names
nothing."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="runbookd_never_run", schedule=None, start_date=datetime(2024, 1, 1),
     catchup=False, tags=["runbookd-tests"])
def runbookd_never_run() -> None:
    @task(retries=0)
    def nothing() -> None:
        pass

    nothing()


runbookd_never_run()
