"""Migrations are the only source of the schema: no drift against the models, both ways."""

from __future__ import annotations

import asyncio
import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

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


def _model_conditions(dialect: str) -> dict[str, str]:
    """Each partial index of the models, and its condition on this dialect."""
    return {index.name: str(index.dialect_options[dialect]["where"])
            for table in Base.metadata.tables.values() for index in table.indexes
            if index.dialect_options[dialect]["where"] is not None}


async def _database_conditions(url: str) -> tuple[str, dict[str, str]]:
    """Each partial index the migrated database has, and its condition as the database keeps
    it. (Alembic's drift check compares an index's columns, never its condition.)"""
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                rows = await conn.execute(text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
            else:
                rows = await conn.execute(text(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
            found = {name: ddl.split(" WHERE ", 1)[1] for name, ddl in rows
                     if " WHERE " in ddl}
            return engine.dialect.name, found
    finally:
        await engine.dispose()


async def _roundtrip(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
    diff, tables = await _diff_and_tables(url)
    assert diff == [], f"models and migrations disagree: {diff}"
    dialect, conditions = await _database_conditions(url)
    declared = _model_conditions(dialect)
    assert set(conditions) == set(declared), "partial indexes differ from the models"
    for name, condition in declared.items():
        # The same values and columns, however the database spells the condition.
        kept = conditions[name]
        assert set(re.findall(r"'([^']*)'", condition)) == set(re.findall(r"'([^']*)'", kept)), (
            name, condition, kept)
        columns = set(re.findall(r"[a-z_]+", re.sub(r"'[^']*'", "", condition))) - {
            "in", "is", "and", "or", "not", "null", "true", "false"}
        assert columns <= set(re.findall(r"[a-z_]+", kept)), (name, condition, kept)
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
