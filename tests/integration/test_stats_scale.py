"""Stats stay correct at any size: no statement carries a bind parameter per execution.

asyncpg refuses more than 32,767 bind parameters, and `IN (:id1, …)` over a 30-day window
made every window past that size a 503 "database unavailable". The rows are inserted in bulk,
past the engine's final transition, so the backfill rolls them up as the migration would.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.db import make_engine
from app.engine.rollups import backfill
from tests.support.auth import auth
from tests.support.engine_catalog import runbook, step

SEEDED = 33_000


async def _seed(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO executions (runbook_id, runbook_version, target, status, params,"
                " dry_run, trigger, created_at, updated_at, started_at, finished_at)"
                " SELECT 'bulk', 'v1', 'model:m' || g, 'succeeded', '{}', false, 'alert',"
                " now() - interval '1 hour', now(), now() - interval '1 hour', now()"
                " FROM generate_series(1, :n) AS g"), {"n": SEEDED})
            await conn.run_sync(backfill)
    finally:
        await engine.dispose()


async def test_stats_over_more_executions_than_bind_parameters(make_rig, db_url, tokens):
    if not db_url.startswith("postgresql"):
        pytest.skip("the bind-parameter limit is asyncpg's; SQLite has none this low")
    async with make_rig([runbook("bulk", [step("a")])]) as r:
        await _seed(db_url)
        answer = await r.http.get("/api/v1/stats", headers=auth(tokens["victor"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["overall"]["outcomes"]["succeeded"] == SEEDED
