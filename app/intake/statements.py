"""The statements of an ingest batch, per dialect, on the database driver itself: reading the
stored states of its alerts, inserting its delivery rows, and (for the lane) inserting new
alerts with their labels.

Every webhook request reads the stored state of its alerts and writes one delivery row. Run
through SQLAlchemy, the statement set-up of these two cost more CPU than the whole HTTP side
of the request (benchmarks/RESULTS.md: ingest went from 0.29x to 0.5x of a bare endpoint on
PostgreSQL when they moved to the driver, with the pool's pre-ping gone). Each dialect has
one implementation of each statement, which takes the connection to run on:

- the full path (service.py) runs them on the session's own connection and inside its
  transaction: `read_states` and `insert_deliveries` below;
- the lane (redelivery.py) runs them on a connection of its own, and also writes there the
  new alerts that no runbook handles: `*_insert_alerts` and `*_insert_labels`.

SQLite's are synchronous functions of a sqlite3 connection, run on the thread that owns it:
aiosqlite's for the full path, the lane's own for the lane. PostgreSQL's take an asyncpg
connection. Everything else in the intake stays on SQLAlchemy.

SQLite keeps timestamps as the text `UTCDateTime` writes ('YYYY-MM-DD HH:MM:SS.ffffff', UTC);
this module reads and writes exactly that form.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.intake.models import LABEL_VALUE_INDEXED
from app.intake.normalize import Envelope, NormalizedAlert

AlertKey = tuple[str, str, dt.datetime]  # source, fingerprint, starts_at: one alert row


@dataclass(slots=True, kw_only=True)
class StoredState:
    """What is stored of an alert; `id` is None for one that a batch is about to insert."""

    id: int | None
    status: str
    status_at: dt.datetime


States = dict[AlertKey, StoredState]
DeliveryRow = dict[str, Any]  # the columns of DELIVERY_COLUMNS
AlertRow = dict[str, Any]  # the columns of ALERT_COLUMNS
LabelRow = tuple[int, str, str]  # alert_id, name, value
CountRow = tuple[int, int, int, int]  # delivery id, alerts new, changed, duplicate to add


class PgConnection(Protocol):
    """What the PostgreSQL statements need of an asyncpg connection."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


T = TypeVar("T")
R = TypeVar("R")


class SqliteThread(Protocol):
    """aiosqlite's connection: a sqlite3 connection, and the one thread that may use it."""

    @property
    def _conn(self) -> sqlite3.Connection: ...

    async def _execute(self, fn: Callable[..., T], *args: Any) -> T: ...


STATE_COLUMNS = "id, source, fingerprint, starts_at, status, status_at"
DELIVERY_COLUMNS = (
    "source", "received_at", "delivery_key", "group_key", "receiver", "event_type",
    "remote_addr", "alerts_total", "alerts_new", "alerts_changed", "alerts_duplicate",
    "truncated_alerts",
)
ALERT_COLUMNS = (
    "source", "fingerprint", "starts_at", "status", "ends_at", "status_at", "alertname",
    "labels", "annotations", "generator_url", "raw", "received_at", "updated_at",
    "last_delivery_id", "match_note",
)
_TIMES = frozenset({"received_at", "starts_at", "ends_at", "status_at", "updated_at"})
_JSON = frozenset({"labels", "annotations", "raw"})
_PG_TYPES = {"alerts_total": "int", "alerts_new": "int", "alerts_changed": "int",
             "alerts_duplicate": "int", "truncated_alerts": "int", "last_delivery_id": "bigint",
             **{c: "timestamptz" for c in _TIMES}, **{c: "jsonb" for c in _JSON}}
# SQLite allows 32766 bound values per statement: 1000 rows of 15 columns stay well under.
CHUNK = 1000

# By source and fingerprint: the leading columns of the alerts' unique index. By fingerprint
# alone, every batch would scan the whole table.
PG_STATES_SQL = (f"SELECT {STATE_COLUMNS} FROM alerts "
                 "WHERE source = $1 AND fingerprint = ANY($2::text[])")
_COLUMNS = ", ".join(DELIVERY_COLUMNS)


def _pg_arrays(columns: tuple[str, ...]) -> str:
    return ", ".join(f"${i}::{_PG_TYPES.get(c, 'text')}[]" for i, c in enumerate(columns, 1))


# Rows go in in the order of the arrays (ORDER BY n), and the id sequence hands out increasing
# values in that order, so the sorted ids line up with the rows.
PG_INSERT_DELIVERIES_SQL = (
    f"INSERT INTO deliveries ({_COLUMNS}) SELECT {_COLUMNS} FROM unnest("
    f"{_pg_arrays(DELIVERY_COLUMNS)}) WITH ORDINALITY AS t({_COLUMNS}, n) ORDER BY n RETURNING id")
_ALERT_COLUMNS = ", ".join(ALERT_COLUMNS)
# The same ordering argument as for the deliveries' ids.
PG_INSERT_ALERTS_SQL = (
    f"INSERT INTO alerts ({_ALERT_COLUMNS}) SELECT {_ALERT_COLUMNS} FROM unnest("
    f"{_pg_arrays(ALERT_COLUMNS)}) WITH ORDINALITY AS t({_ALERT_COLUMNS}, n) ORDER BY n "
    "RETURNING id")
PG_INSERT_LABELS_SQL = ("INSERT INTO alert_labels (alert_id, name, value) "
                        "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])")


def chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def fingerprints_by_source(alerts: Iterable[NormalizedAlert]) -> dict[str, list[str]]:
    """The distinct fingerprints of these alerts, per source, sorted."""
    by_source: dict[str, set[str]] = {}
    for alert in alerts:
        by_source.setdefault(alert.source, set()).add(alert.fingerprint)
    return {source: sorted(prints) for source, prints in by_source.items()}


def delivery_row(env: Envelope, *, new: int, changed: int, duplicate: int) -> DeliveryRow:
    return {
        "source": env.source, "received_at": env.received_at,
        "delivery_key": env.delivery_key, "group_key": env.group_key,
        "receiver": env.receiver, "event_type": env.event_type,
        "remote_addr": env.remote_addr,
        "alerts_total": len(env.alerts) if env.alerts_total is None else env.alerts_total,
        "alerts_new": new, "alerts_changed": changed, "alerts_duplicate": duplicate,
        "truncated_alerts": env.truncated_alerts,
    }


def alert_row(alert: NormalizedAlert, *, delivery_id: int, received_at: dt.datetime,
              match_note: str | None) -> AlertRow:
    """A new alert's row, as the full path's writes it (service.py)."""
    alertname = alert.labels.get("alertname")
    return {
        "source": alert.source, "fingerprint": alert.fingerprint, "starts_at": alert.starts_at,
        "status": alert.status, "ends_at": alert.ends_at, "status_at": alert.status_at,
        "alertname": alertname[:255] if alertname else None,
        "labels": alert.labels, "annotations": alert.annotations,
        "generator_url": alert.generator_url, "raw": alert.raw,
        "received_at": received_at, "updated_at": received_at, "last_delivery_id": delivery_id,
        "match_note": match_note,
    }


def label_rows(alert_ids: list[int], alerts: list[NormalizedAlert]) -> list[LabelRow]:
    """The alert_labels rows of new alerts: names and values cut to the indexed length."""
    return [(alert_id, name[:255], value[:LABEL_VALUE_INDEXED])
            for alert_id, alert in zip(alert_ids, alerts, strict=True)
            for name, value in alert.labels.items()]


def _json(value: Any) -> str | None:
    # As SQLAlchemy's JSON type writes it (json.dumps with its defaults).
    return None if value is None else json.dumps(value)


# --- SQLite: on the thread that owns the connection ---------------------------------------

def sqlite_text(value: dt.datetime) -> str:
    """A UTC timestamp as SQLite stores it (SQLAlchemy's format: the year in four digits)."""
    # isoformat, not strftime: half the time, and five of these per new alert.
    return value.astimezone(dt.UTC).isoformat(" ", "microseconds")[:26]


def sqlite_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def sqlite_states_sql(count: int) -> str:
    """Bound values: the source, then `count` fingerprints."""
    return (f"SELECT {STATE_COLUMNS} FROM alerts "
            f"WHERE source = ? AND fingerprint IN ({','.join('?' * count)})")


def sqlite_read_states(conn: sqlite3.Connection, by_source: dict[str, list[str]]) -> States:
    """The stored states of the alerts with these fingerprints, per source."""
    states: States = {}
    for source, fingerprints in by_source.items():
        for chunk in chunks(fingerprints):
            for i, src, fp, starts, st, at in conn.execute(sqlite_states_sql(len(chunk)),
                                                           [source, *chunk]):
                states[src, fp, sqlite_time(starts)] = StoredState(
                    id=i, status=st, status_at=sqlite_time(at))
    return states


def sqlite_insert_deliveries_sql(count: int) -> str:
    """A multi-row INSERT: `sqlite_inserted_ids` gives the ids of its rows."""
    row = "(" + ",".join("?" * len(DELIVERY_COLUMNS)) + ")"
    return f"INSERT INTO deliveries ({_COLUMNS}) VALUES {','.join([row] * count)}"


def sqlite_inserted_ids(last_rowid: int, count: int) -> list[int]:
    """The ids of the rows of one multi-row INSERT, in the order of its VALUES.

    One statement holds SQLite's only write lock from its first row to its last and inserts
    its rows in order, so their rowids are consecutive, ending at the last one inserted.
    This needs no RETURNING, whose one row per step costs a GIL hand-off each in a thread.
    """
    return list(range(last_rowid - count + 1, last_rowid + 1))


def sqlite_delivery_values(rows: list[DeliveryRow]) -> list[Any]:
    """The bound values of `sqlite_insert_deliveries_sql`, row after row."""
    return [sqlite_text(row[c]) if c == "received_at" else row[c]
            for row in rows for c in DELIVERY_COLUMNS]


def sqlite_insert_deliveries(conn: sqlite3.Connection, rows: list[DeliveryRow]) -> list[int]:
    """Insert delivery rows, one statement per CHUNK; their ids in the order of `rows`.

    More than CHUNK rows take more than one statement: the caller holds a transaction.
    """
    ids: list[int] = []
    for chunk in chunks(rows):
        cursor = conn.execute(sqlite_insert_deliveries_sql(len(chunk)),
                              sqlite_delivery_values(chunk))
        ids += sqlite_inserted_ids(cursor.lastrowid, len(chunk))  # type: ignore[arg-type]
    return ids


def sqlite_insert_alerts(conn: sqlite3.Connection, rows: list[AlertRow]) -> list[int]:
    """Insert alert rows, one multi-row statement per CHUNK; their ids in the order of `rows`.

    The caller holds a transaction (BEGIN IMMEDIATE): the batch's alerts, labels and
    deliveries commit together.
    """
    row = "(" + ",".join("?" * len(ALERT_COLUMNS)) + ")"
    ids: list[int] = []
    for chunk in chunks(rows):
        values = [_sqlite_value(c, r[c]) for r in chunk for c in ALERT_COLUMNS]
        cursor = conn.execute(f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES "
                              f"{','.join([row] * len(chunk))}", values)
        ids += sqlite_inserted_ids(cursor.lastrowid, len(chunk))  # type: ignore[arg-type]
    return ids


def _sqlite_value(column: str, value: Any) -> Any:
    if column in _TIMES:
        return None if value is None else sqlite_text(value)
    if column in _JSON:
        return _json(value)
    return value


_ADD_COUNTS = ("UPDATE deliveries SET alerts_new = alerts_new + {}, "
               "alerts_changed = alerts_changed + {}, alerts_duplicate = alerts_duplicate + {} "
               "WHERE id = {}")


def sqlite_add_counts(conn: sqlite3.Connection, rows: list[CountRow]) -> None:
    """Add a later part's counts to its delivery's row (writer.py stores big ones in parts)."""
    conn.executemany(_ADD_COUNTS.format("?", "?", "?", "?"),
                     [(new, changed, dup, delivery_id) for delivery_id, new, changed, dup in rows])


def sqlite_insert_labels(conn: sqlite3.Connection, rows: list[LabelRow]) -> None:
    conn.executemany("INSERT INTO alert_labels (alert_id, name, value) VALUES (?, ?, ?)", rows)


# --- PostgreSQL ---------------------------------------------------------------------------

async def pg_read_states(conn: PgConnection, by_source: dict[str, list[str]]) -> States:
    """The stored states of the alerts with these fingerprints, per source."""
    states: States = {}
    for source, fingerprints in by_source.items():
        for i, src, fp, starts, st, at in await conn.fetch(PG_STATES_SQL, source, fingerprints):
            states[src, fp, starts] = StoredState(id=i, status=st, status_at=at)
    return states


def pg_delivery_arrays(rows: list[DeliveryRow]) -> list[list[Any]]:
    """The bound arrays of PG_INSERT_DELIVERIES_SQL, one per column."""
    return [[row[c] for row in rows] for c in DELIVERY_COLUMNS]


async def pg_insert_deliveries(conn: PgConnection, rows: list[DeliveryRow]) -> list[int]:
    """Insert delivery rows in one statement; their ids in the order of `rows`."""
    result = await conn.fetch(PG_INSERT_DELIVERIES_SQL, *pg_delivery_arrays(rows))
    return sorted(r[0] for r in result)


async def pg_insert_alerts(conn: PgConnection, rows: list[AlertRow]) -> list[int]:
    """Insert alert rows in one statement; their ids in the order of `rows`. The caller holds
    a transaction."""
    arrays = [[_json(r[c]) for r in rows] if c in _JSON else [r[c] for r in rows]
              for c in ALERT_COLUMNS]
    return sorted(r[0] for r in await conn.fetch(PG_INSERT_ALERTS_SQL, *arrays))


async def pg_add_counts(conn: PgConnection, rows: list[CountRow]) -> None:
    for delivery_id, new, changed, duplicate in rows:  # one a batch: parts are stored alone
        await conn.fetch(_ADD_COUNTS.format("$2", "$3", "$4", "$1"),
                         delivery_id, new, changed, duplicate)


async def pg_insert_labels(conn: PgConnection, rows: list[LabelRow]) -> None:
    if rows:
        await conn.fetch(PG_INSERT_LABELS_SQL, *(list(c) for c in zip(*rows, strict=True)))


# --- On a session's connection (the full path) --------------------------------------------

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


async def _on_thread(driver: SqliteThread, fn: Callable[[sqlite3.Connection, T], R],
                     arg: T) -> R:
    # One hop to aiosqlite's thread for the whole statement set, as its own execute_fetchall
    # takes for one. aiosqlite has no public call for this; SQLAlchemy's aiosqlite adapter
    # uses the same two members.
    return await driver._execute(fn, driver._conn, arg)


async def read_states(session: AsyncSession, by_source: dict[str, list[str]]) -> States:
    """The stored states of the alerts with these fingerprints, on the session's connection."""
    dialect, driver = await _driver(session, transaction=False)
    if dialect == "postgresql":
        return await pg_read_states(driver, by_source)
    return await _on_thread(driver, sqlite_read_states, by_source)


async def insert_deliveries(session: AsyncSession, rows: list[DeliveryRow], *,
                            only_write: bool) -> list[int]:
    """Insert delivery rows on the session's connection; their ids in the order of `rows`.

    When these rows are the batch's only write (every alert a duplicate: the usual case, as
    Alertmanager resends groups), the one statement is atomic by itself and needs no
    transaction around it; the 2xx still follows its commit.
    """
    dialect, driver = await _driver(session, transaction=not only_write)
    if dialect == "postgresql":
        return await pg_insert_deliveries(driver, rows)
    return await _on_thread(driver, sqlite_insert_deliveries, rows)
