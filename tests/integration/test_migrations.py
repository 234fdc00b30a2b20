"""Migrations are the only source of the schema: no drift against the models, both ways."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db import make_engine
from app.migrate import downgrade, upgrade
from app.models import Base
from tests.conftest import PG_URL, drop_pg_database, new_pg_database


async def _diff_and_tables(url: str) -> tuple[list, set[str]]:
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            def inspect_sync(sync_conn):
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return (compare_metadata(ctx, Base.metadata),
                        set(inspect(sync_conn).get_table_names()))
            return await conn.run_sync(inspect_sync)
    finally:
        await engine.dispose()


async def _roundtrip(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
    diff, tables = await _diff_and_tables(url)
    assert diff == [], f"models and migrations disagree: {diff}"
    assert {"alerts", "executions", "step_runs", "events"} <= tables
    await asyncio.to_thread(downgrade, url)
    _, tables = await _diff_and_tables(url)
    assert tables <= {"alembic_version"}
    await asyncio.to_thread(upgrade, url)  # and back up again, cleanly


async def test_sqlite_upgrade_has_no_drift_and_downgrades(tmp_path):
    await _roundtrip(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL is not set")
async def test_postgresql_upgrade_has_no_drift_and_downgrades():
    url = await new_pg_database(migrate=False)
    try:
        await _roundtrip(url)
    finally:
        await drop_pg_database(url)
