"""The redelivery lane: store a batch in which every alert is already stored, on a connection
of the writer's own.

Alertmanager resends each group at every group_interval and repeat_interval, so in an alert
storm most deliveries change nothing: each one writes only its delivery row. That is one
statement, atomic by itself, so it needs neither a transaction nor a session. The lane runs
it on a connection it keeps for itself:

- SQLite: a thread of its own with a plain sqlite3 connection, one hop per batch. Through
  aiosqlite each statement is a hop to its thread, and each hop waits for the GIL, which the
  busy event loop holds for up to the switch interval.
- PostgreSQL: an asyncpg connection and two round trips, without the session's set-up.

Anything else (a new or changed alert, a PagerDuty delivery id to look up, a value the
database refuses) is `Declined`, and the writer stores the batch the full way, in a session
with the mapper hook, reusing the states the lane read. Reading the stored states outside a
transaction is safe (the full path reads them outside its transaction too): the decision
compares the sources' timestamps, so a write that lands between the read and the insert can
only make an incoming alert older still.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import PG_CONNECT_ARGS, SQLITE_BUSY_SECONDS, sqlite_pragmas
from app.errors import Unavailable, is_database_unavailable
from app.intake import fastpath
from app.intake.normalize import Envelope
from app.intake.service import AlertKey, IngestResult, StoredState, decide, states_by_key

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Declined:
    """The batch needs the full path. `states`: the stored states of all its alerts, when
    the lane got as far as reading them."""

    states: dict[AlertKey, StoredState] | None = None


class RedeliveryLane(abc.ABC):
    """Stores all-duplicate batches; any other batch is `Declined`."""

    async def store(self, envelopes: Sequence[Envelope]) -> list[IngestResult] | Declined:
        if not _eligible(envelopes):
            return Declined()
        try:
            outcome = await self._store(envelopes)
        except Unavailable:
            raise
        except Exception as exc:
            if is_database_unavailable(exc) or isinstance(exc, sqlite3.OperationalError):
                await self._reset()
                raise Unavailable() from exc
            # The full path has the error handling (a value too large, one bad delivery in
            # a batch); it will meet the same error and answer it.
            log.warning("redelivery lane left a batch to the full path: %s", type(exc).__name__)
            return Declined()
        if isinstance(outcome, Declined):
            return outcome
        return [IngestResult(delivery_id, len(env.alerts), 0, 0, len(env.alerts),
                             env.truncated_alerts)
                for delivery_id, env in zip(outcome, envelopes, strict=True)]

    @abc.abstractmethod
    async def _store(self, envelopes: Sequence[Envelope]) -> list[int] | Declined:
        """The new delivery ids, in order; Declined if any alert is not a duplicate."""

    @abc.abstractmethod
    async def _reset(self) -> None:
        """Drop the connection after an outage; the next batch opens a new one."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection at shutdown."""


def _eligible(envelopes: Sequence[Envelope]) -> bool:
    # A delivery id must be looked up and remembered in one transaction: the full path.
    return all(env.delivery_key is None and env.alerts for env in envelopes)


def _all_duplicates(envelopes: Sequence[Envelope],
                    states: dict[AlertKey, StoredState]) -> bool:
    return all(decide(states.get(alert.key), alert) == "duplicate"
               for env in envelopes for alert in env.alerts)


def _by_source(envelopes: Sequence[Envelope]) -> dict[str, list[str]]:
    return fastpath.fingerprints_by_source(a for env in envelopes for a in env.alerts)


def _duplicate_rows(envelopes: Sequence[Envelope]) -> list[dict[str, Any]]:
    return [fastpath.delivery_row(env, new=0, changed=0, duplicate=len(env.alerts))
            for env in envelopes]


class _SqliteLane(RedeliveryLane):
    def __init__(self, connect_args: tuple[list[Any], dict[str, Any]]) -> None:
        self._args, self._kwargs = connect_args
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ingest-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _store(self, envelopes: Sequence[Envelope]) -> list[int] | Declined:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._store_sync, envelopes)

    def _store_sync(self, envelopes: Sequence[Envelope]) -> list[int] | Declined:
        conn = self._conn or self._connect()
        states = states_by_key(
            row for source, fingerprints in _by_source(envelopes).items()
            for chunk in fastpath.chunks(fingerprints)
            for row in fastpath.sqlite_state_rows(conn.execute(
                fastpath.sqlite_states_sql(len(chunk)), [source, *chunk])))
        if not _all_duplicates(envelopes, states):
            return Declined(states)
        deliveries = _duplicate_rows(envelopes)
        if len(deliveries) <= fastpath.CHUNK:
            return _insert_deliveries(conn, deliveries)  # one statement commits on its own
        with conn:  # more than one statement: one transaction, as for any batch
            conn.execute("BEGIN IMMEDIATE")
            return _insert_deliveries(conn, deliveries)

    def _connect(self) -> sqlite3.Connection:
        # Autocommit: the lane's only write is one statement, atomic by itself.
        conn = sqlite3.connect(*self._args, **{**self._kwargs, "isolation_level": None})
        sqlite_pragmas(conn)
        self._conn = conn
        return conn

    async def _reset(self) -> None:
        def close() -> None:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close)

    async def close(self) -> None:
        await self._reset()
        self._thread.shutdown(wait=True)


def _insert_deliveries(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[int]:
    ids: list[int] = []
    for chunk in fastpath.chunks(rows):
        cursor = conn.execute(fastpath.sqlite_insert_deliveries_sql(len(chunk)),
                              fastpath.sqlite_delivery_values(chunk))
        ids += fastpath.sqlite_inserted_ids(cursor.lastrowid, len(chunk))
    return ids


class _PostgresLane(RedeliveryLane):
    def __init__(self, connect_kwargs: dict[str, Any]) -> None:
        self._kwargs = connect_kwargs
        self._conn: Any = None

    async def _store(self, envelopes: Sequence[Envelope]) -> list[int] | Declined:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(**self._kwargs)
        rows = [tuple(r) for source, fingerprints in _by_source(envelopes).items()
                for r in await self._conn.fetch(fastpath.PG_STATES_SQL, source, fingerprints)]
        states = states_by_key(rows)  # type: ignore[arg-type]
        if not _all_duplicates(envelopes, states):
            return Declined(states)
        result = await self._conn.fetch(fastpath.PG_INSERT_DELIVERIES_SQL,
                                        *fastpath.pg_delivery_arrays(_duplicate_rows(envelopes)))
        return sorted(r[0] for r in result)

    async def _reset(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.terminate()  # it may hang on a lost server: no goodbye

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), timeout=5)
            except Exception:  # a lost or hung server: closing is all that is left to do
                conn.terminate()


def open_lane(engine: AsyncEngine) -> RedeliveryLane | None:
    """A lane on the engine's database, or None where one cannot share it (in-memory SQLite,
    which is private to each connection)."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    if engine.dialect.name == "sqlite":
        database = args[0] if args else ""
        if not database or database == ":memory:" or "mode=memory" in str(database):
            return None
        return _SqliteLane((list(args), {**kwargs, "timeout": SQLITE_BUSY_SECONDS}))
    if engine.dialect.name == "postgresql":
        return _PostgresLane({**kwargs, **PG_CONNECT_ARGS})
    return None
