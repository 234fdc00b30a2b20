"""Retraining DAGs that the pipeline drills pause and unpause (stale-feature-store,
input-data-quality), one per drill so that no drill sees another's pause. Never scheduled:
only their `is_paused` matters."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

DRILL_DAGS = ("retrain_drill_stale", "retrain_drill_quality")


def retraining(dag_id: str) -> None:
    @dag(dag_id=dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         tags=["runbookd-tests", "drills"])
    def retrain() -> None:
        @task(retries=0)
        def train() -> None:
            pass

        train()

    retrain()


for drill_dag in DRILL_DAGS:
    retraining(drill_dag)
