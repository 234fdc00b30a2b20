"""The two statements of every ingest batch, on the database driver itself.

Every webhook request reads the stored state of its alerts and writes one delivery row. Run
through SQLAlchemy, the statement set-up of these two cost more CPU than the whole HTTP side
of the request (benchmarks/RESULTS.md: ingest went from 0.29x to 0.5x of a bare endpoint on
PostgreSQL when they moved here, with the pool's pre-ping gone). They run on the session's
own connection and inside its transaction; everything else in the intake stays on
SQLAlchemy.

SQLite keeps timestamps as the text `UTCDateTime` writes ('YYYY-MM-DD HH:MM:SS.ffffff', UTC);
this module reads and writes exactly that form.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

STATE_COLUMNS = "id, source, fingerprint, starts_at, status, status_at"
DELIVERY_COLUMNS = (
    "source", "received_at", "delivery_key", "group_key", "receiver", "event_type",
    "remote_addr", "alerts_total", "alerts_new", "alerts_changed", "alerts_duplicate",
    "truncated_alerts",
)
_PG_TYPES = {"received_at": "timestamptz", "alerts_total": "int", "alerts_new": "int",
             "alerts_changed": "int", "alerts_duplicate": "int", "truncated_alerts": "int"}
_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

StateRow = tuple[int, str, str, dt.datetime, str, dt.datetime]


def sqlite_text(value: dt.datetime) -> str:
    """A UTC timestamp as SQLite stores it."""
    return value.astimezone(dt.UTC).strftime(_SQLITE_FORMAT)


def sqlite_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


async def _driver(session: AsyncSession, *, transaction: bool = True) -> tuple[str, Any]:
    """The dialect and the driver connection, inside the session's transaction unless
    `transaction` is False (a read, or a write that is the batch's only one)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if (transaction and connection.dialect.name == "postgresql"
            and not driver.is_in_transaction()):
        # SQLAlchemy's asyncpg adapter sends BEGIN lazily, on its first statement: without
        # one, a statement sent on the driver would commit on its own, apart from the batch.
        await connection.exec_driver_sql("SELECT 1")
    return connection.dialect.name, driver


async def stored_states(session: AsyncSession, fingerprints: Sequence[str]) -> list[StateRow]:
    """(id, source, fingerprint, starts_at, status, status_at) of alerts with these prints."""
    dialect, driver = await _driver(session, transaction=False)
    if dialect == "postgresql":
        rows = await driver.fetch(
            f"SELECT {STATE_COLUMNS} FROM alerts WHERE fingerprint = ANY($1::text[])",
            list(fingerprints))
        return [tuple(r) for r in rows]  # type: ignore[misc]
    marks = ",".join("?" * len(fingerprints))
    # execute_fetchall: one hop to aiosqlite's thread instead of three.
    rows = await driver.execute_fetchall(
        f"SELECT {STATE_COLUMNS} FROM alerts WHERE fingerprint IN ({marks})", list(fingerprints))
    return [(i, src, fp, sqlite_time(starts), st, sqlite_time(at))
            for i, src, fp, starts, st, at in rows]


async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]], *,
                            only_write: bool) -> list[int]:
    """Insert delivery rows; their ids in the order of `rows`.

    When these rows are the batch's only write (every alert a duplicate: the usual case, as
    Alertmanager resends groups), the one statement is atomic by itself and needs no
    transaction around it; the 2xx still follows its commit.
    """
    dialect, driver = await _driver(session, transaction=not only_write)
    columns = ", ".join(DELIVERY_COLUMNS)
    if dialect == "postgresql":
        arrays = ", ".join(f"${i}::{_PG_TYPES.get(c, 'text')}[]"
                           for i, c in enumerate(DELIVERY_COLUMNS, start=1))
        # Rows go in in the order of `rows` (ORDER BY n), and the id sequence hands out
        # increasing values in that order, so the sorted ids line up with `rows`.
        result = await driver.fetch(
            f"INSERT INTO deliveries ({columns}) SELECT {columns} FROM unnest({arrays}) "
            f"WITH ORDINALITY AS t({columns}, n) ORDER BY n RETURNING id",
            *[[row[c] for row in rows] for c in DELIVERY_COLUMNS])
        return sorted(r[0] for r in result)
    values = [tuple(sqlite_text(row[c]) if c == "received_at" else row[c]
                    for c in DELIVERY_COLUMNS) for row in rows]
    marks = ",".join("?" * len(DELIVERY_COLUMNS))
    await driver.executemany(f"INSERT INTO deliveries ({columns}) VALUES ({marks})", values)
    [(last,)] = await driver.execute_fetchall("SELECT last_insert_rowid()")
    # One writer holds SQLite, so the new rowids are consecutive (see db.insert_returning_ids).
    return list(range(last - len(rows) + 1, last + 1))
