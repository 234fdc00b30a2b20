"""The DAG stale-feature-store triggers (`feast materialize` for one view, in production):
here it succeeds at once and returns its conf, an XCom the drill reads back."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="feature_backfill", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     tags=["runbookd-tests", "drills"])
def feature_backfill() -> None:
    @task(retries=0)
    def materialize() -> dict:
        return dict(get_current_context()["dag_run"].conf or {})

    materialize()


feature_backfill()
