"""Succeeds after about a second and returns its conf (an XCom the tests read back)."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="runbookd_succeeds", schedule=None, start_date=datetime(2024, 1, 1),
     catchup=False, tags=["runbookd-tests"])
def runbookd_succeeds() -> None:
    @task(retries=0)
    def record_conf() -> dict:
        time.sleep(1)
        return dict(get_current_context()["dag_run"].conf or {})

    record_conf()


runbookd_succeeds()
