"""The redelivery lane: store a batch in which every alert is already stored, on a connection
of the writer's own.

Alertmanager resends each group at every group_interval and repeat_interval, so in an alert
storm most deliveries change nothing: each one writes only its delivery row. That is one
statement, atomic by itself, so it needs neither a transaction nor a session. The lane runs
the full path's own statements (statements.py) on a connection it keeps for itself:

- SQLite: a thread of its own with a plain sqlite3 connection, one hop per batch for both
  statements. Each hop to a thread waits for the GIL, which the busy event loop holds for up
  to the switch interval, and the full path takes one per statement and more for its session.
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
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import PG_CONNECT_ARGS, SQLITE_BUSY_SECONDS, sqlite_pragmas
from app.errors import Unavailable, is_database_unavailable
from app.intake import statements
from app.intake.models import DUPLICATE
from app.intake.normalize import Envelope
from app.intake.service import IngestResult, decide
from app.intake.statements import DeliveryRow, States

log = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class Declined:
    """The batch needs the full path. `states`: the stored states of all its alerts, when
    the lane got as far as reading them."""

    states: States | None = None


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
        return [IngestResult(delivery_id=delivery_id, received=len(env.alerts), new=0,
                             changed=0, duplicate=len(env.alerts),
                             truncated_alerts=env.truncated_alerts)
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


def _all_duplicates(envelopes: Sequence[Envelope], states: States) -> bool:
    return all(decide(states.get(alert.key), alert) == DUPLICATE
               for env in envelopes for alert in env.alerts)


def _by_source(envelopes: Sequence[Envelope]) -> dict[str, list[str]]:
    return statements.fingerprints_by_source(a for env in envelopes for a in env.alerts)


def _duplicate_rows(envelopes: Sequence[Envelope]) -> list[DeliveryRow]:
    return [statements.delivery_row(env, new=0, changed=0, duplicate=len(env.alerts))
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
        states = statements.sqlite_read_states(conn, _by_source(envelopes))
        if not _all_duplicates(envelopes, states):
            return Declined(states=states)
        deliveries = _duplicate_rows(envelopes)
        if len(deliveries) <= statements.CHUNK:  # one statement commits on its own
            return statements.sqlite_insert_deliveries(conn, deliveries)
        with conn:  # more than one statement: one transaction, as for any batch
            conn.execute("BEGIN IMMEDIATE")
            return statements.sqlite_insert_deliveries(conn, deliveries)

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


class _PgLaneConnection(statements.PgConnection, Protocol):
    """What the lane needs of its asyncpg connection, besides running the statements."""

    def is_closed(self) -> bool: ...

    async def close(self, *, timeout: float | None = None) -> None: ...

    def terminate(self) -> None: ...


class _PostgresLane(RedeliveryLane):
    def __init__(self, connect_kwargs: dict[str, Any]) -> None:
        self._kwargs = connect_kwargs
        self._conn: _PgLaneConnection | None = None

    async def _store(self, envelopes: Sequence[Envelope]) -> list[int] | Declined:
        # Imported on first use for start-up memory: a SQLite process never loads asyncpg.
        import asyncpg

        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await asyncpg.connect(**self._kwargs)
        states = await statements.pg_read_states(conn, _by_source(envelopes))
        if not _all_duplicates(envelopes, states):
            return Declined(states=states)
        return await statements.pg_insert_deliveries(conn, _duplicate_rows(envelopes))

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
