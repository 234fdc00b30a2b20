"""The retraining DAG the drift runbooks queue (`retrain_model`): it records its conf (an XCom
the drills read back) and succeeds. A real one trains, and registers a version unpromoted."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="retrain_model", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     tags=["runbookd-tests"])
def retrain_model() -> None:
    @task(retries=0)
    def train() -> dict:
        return dict(get_current_context()["dag_run"].conf or {})

    train()


retrain_model()
