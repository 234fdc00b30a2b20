"""The lane: store a batch in which every alert is already stored, or new and handled by no
runbook, on a connection of the writer's own.

Alertmanager resends each group at every group_interval and repeat_interval, so in an alert
storm most deliveries change nothing: each one writes only its delivery row. That is one
statement, atomic by itself, so it needs neither a transaction nor a session. When an alert
joins a group, the next delivery holds it beside the ones already stored; in a storm, most
new alerts are ones that no runbook handles. Storing those is all their ingest does (the
mapper hook would only note "no runbook matched"), so the lane writes them too, with their
labels and that note, in one short transaction with the delivery rows: the known alerts of
the batch are counted, not written, and nothing goes through a session.

The lane runs the full path's own statements (statements.py) on a connection it keeps:

- SQLite: a thread of its own with a plain sqlite3 connection, one hop per batch for every
  statement. Each hop to a thread waits for the GIL, which the busy event loop holds for up
  to the switch interval, and the full path takes one per statement and more for its session.
- PostgreSQL: an asyncpg connection, without the session's set-up.

Anything else (a changed alert, a new one that a runbook may handle, a PagerDuty delivery id
to look up, a value the database refuses) is `Declined`, and the writer stores the batch the
full way, in a session with the mapper hook, reusing the states the lane read. Reading the
stored states outside a transaction is safe (the full path reads them outside its
transaction too): the decision compares the sources' timestamps, so a write that lands
between the read and the insert can only make an incoming alert older still, and a new alert
that another writer stored meanwhile trips the unique index, which declines the batch.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import PG_CONNECT_ARGS, SQLITE_BUSY_SECONDS, sqlite_pragmas
from app.errors import Unavailable, is_database_unavailable
from app.intake import statements
from app.intake.models import CHANGED, DUPLICATE, NEW, NO_RUNBOOK, RESOLVED, Decision
from app.intake.normalize import Envelope, NormalizedAlert
from app.intake.service import IngestResult, decide_batch
from app.intake.statements import AlertRow, CountRow, DeliveryRow, LabelRow, States

# Whether no runbook handles an alert with these labels: then storing it is all its ingest does.
Unmatched = Callable[[Mapping[str, str]], bool]

log = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class Declined:
    """The batch needs the full path. `states`: the stored states of all its alerts, when
    the lane got as far as reading them."""

    states: States | None = None


@dataclass(slots=True, kw_only=True)
class Plan:
    """What the lane writes for a batch: a delivery row per envelope (or, for a later part of
    a big delivery, counts added to its row) and the new alerts."""

    decisions: dict[int, list[Decision]]
    deliveries: list[DeliveryRow]  # of the envelopes at `inserted`
    inserted: list[int]
    counts: list[CountRow]  # of the parts
    new: list[tuple[int, NormalizedAlert]]  # the index of its envelope, the alert

    def delivery_ids(self, envelopes: Sequence[Envelope], inserted_ids: list[int]) -> list[int]:
        """Each envelope's delivery id, given the ids of the rows inserted."""
        ids = dict(zip(self.inserted, inserted_ids, strict=True))
        return [ids[i] if env.delivery_id is None else env.delivery_id
                for i, env in enumerate(envelopes)]

    def alert_rows(self, envelopes: Sequence[Envelope], delivery_ids: list[int]) -> list[AlertRow]:
        # The note the mapper hook writes on a new alert that no runbook handles; it writes
        # none on one that arrives resolved.
        return [statements.alert_row(
                    alert, delivery_id=delivery_ids[i], received_at=envelopes[i].received_at,
                    match_note=None if alert.status == RESOLVED else NO_RUNBOOK)
                for i, alert in self.new]

    def label_rows(self, alert_ids: list[int]) -> list[LabelRow]:
        return statements.label_rows(alert_ids, [alert for _, alert in self.new])


def plan(envelopes: Sequence[Envelope], states: States, unmatched: Unmatched | None) -> Plan | None:
    """The lane's plan for a batch, or None if the batch needs the full path. Pure."""
    decisions = decide_batch(envelopes, range(len(envelopes)), dict(states))
    new: list[tuple[int, NormalizedAlert]] = []
    for i, per_alert in decisions.items():
        for alert, choice in zip(envelopes[i].alerts, per_alert, strict=True):
            if choice == CHANGED:
                return None
            if choice == NEW:
                if unmatched is None or not unmatched(alert.labels):
                    return None
                new.append((i, alert))
    inserted = [i for i, env in enumerate(envelopes) if env.delivery_id is None]
    deliveries = [statements.delivery_row(envelopes[i], new=decisions[i].count(NEW), changed=0,
                                          duplicate=decisions[i].count(DUPLICATE))
                  for i in inserted]
    counts = [(env.delivery_id, decisions[i].count(NEW), 0, decisions[i].count(DUPLICATE))
              for i, env in enumerate(envelopes) if env.delivery_id is not None]
    return Plan(decisions=decisions, deliveries=deliveries, inserted=inserted, counts=counts,
                new=new)


class RedeliveryLane(abc.ABC):
    """Stores batches of known alerts and of new ones no runbook handles; any other batch is
    `Declined`."""

    def __init__(self, unmatched: Unmatched | None) -> None:
        self._unmatched = unmatched

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
            log.warning("the lane left a batch to the full path: %s", type(exc).__name__)
            return Declined()
        if isinstance(outcome, Declined):
            return outcome
        ids, decisions = outcome
        return [IngestResult(delivery_id=delivery_id, received=len(env.alerts),
                             new=decisions[i].count(NEW), changed=0,
                             duplicate=decisions[i].count(DUPLICATE),
                             truncated_alerts=env.truncated_alerts)
                for i, (delivery_id, env) in enumerate(zip(ids, envelopes, strict=True))]

    def _plan(self, envelopes: Sequence[Envelope], states: States) -> Plan | Declined:
        planned = plan(envelopes, states, self._unmatched)
        return Declined(states=states) if planned is None else planned

    @abc.abstractmethod
    async def _store(self, envelopes: Sequence[Envelope]
                     ) -> tuple[list[int], dict[int, list[Decision]]] | Declined:
        """The new delivery ids, in order, and the decisions; Declined if the batch needs
        the full path."""

    @abc.abstractmethod
    async def _reset(self) -> None:
        """Drop the connection after an outage; the next batch opens a new one."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection at shutdown."""


def _eligible(envelopes: Sequence[Envelope]) -> bool:
    # A delivery id must be looked up and remembered in one transaction: the full path.
    return all(env.delivery_key is None and env.alerts for env in envelopes)


def _by_source(envelopes: Sequence[Envelope]) -> dict[str, list[str]]:
    return statements.fingerprints_by_source(a for env in envelopes for a in env.alerts)


class _SqliteLane(RedeliveryLane):
    def __init__(self, connect_args: tuple[list[Any], dict[str, Any]], *,
                 unmatched: Unmatched | None) -> None:
        super().__init__(unmatched)
        self._args, self._kwargs = connect_args
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ingest-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _store(self, envelopes: Sequence[Envelope]
                     ) -> tuple[list[int], dict[int, list[Decision]]] | Declined:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._store_sync, envelopes)

    def _store_sync(self, envelopes: Sequence[Envelope]
                    ) -> tuple[list[int], dict[int, list[Decision]]] | Declined:
        conn = self._conn or self._connect()
        states = statements.sqlite_read_states(conn, _by_source(envelopes))
        planned = self._plan(envelopes, states)
        if isinstance(planned, Declined):
            return planned
        deliveries = planned.deliveries
        if not planned.new and not planned.counts and len(deliveries) <= statements.CHUNK:
            # One statement commits on its own.
            return statements.sqlite_insert_deliveries(conn, deliveries), planned.decisions
        with conn:  # more than one statement: one transaction, as for any batch
            conn.execute("BEGIN IMMEDIATE")
            ids = planned.delivery_ids(
                envelopes, statements.sqlite_insert_deliveries(conn, deliveries))
            statements.sqlite_add_counts(conn, planned.counts)
            if planned.new:
                alert_ids = statements.sqlite_insert_alerts(
                    conn, planned.alert_rows(envelopes, ids))
                statements.sqlite_insert_labels(conn, planned.label_rows(alert_ids))
            return ids, planned.decisions

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

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Any]: ...

    async def close(self, *, timeout: float | None = None) -> None: ...

    def terminate(self) -> None: ...


class _PostgresLane(RedeliveryLane):
    def __init__(self, connect_kwargs: dict[str, Any], *, unmatched: Unmatched | None) -> None:
        super().__init__(unmatched)
        self._kwargs = connect_kwargs
        self._conn: _PgLaneConnection | None = None

    async def _store(self, envelopes: Sequence[Envelope]
                     ) -> tuple[list[int], dict[int, list[Decision]]] | Declined:
        # Imported on first use for start-up memory: a SQLite process never loads asyncpg.
        import asyncpg

        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await asyncpg.connect(**self._kwargs)
        states = await statements.pg_read_states(conn, _by_source(envelopes))
        planned = self._plan(envelopes, states)
        if isinstance(planned, Declined):
            return planned
        if not planned.new and not planned.counts:  # one statement commits on its own
            return (await statements.pg_insert_deliveries(conn, planned.deliveries),
                    planned.decisions)
        async with conn.transaction():
            inserted = (await statements.pg_insert_deliveries(conn, planned.deliveries)
                        if planned.deliveries else [])
            ids = planned.delivery_ids(envelopes, inserted)
            await statements.pg_add_counts(conn, planned.counts)
            alert_ids = await statements.pg_insert_alerts(conn, planned.alert_rows(envelopes, ids))
            await statements.pg_insert_labels(conn, planned.label_rows(alert_ids))
        return ids, planned.decisions

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


def open_lane(engine: AsyncEngine, *, unmatched: Unmatched | None = None
              ) -> RedeliveryLane | None:
    """A lane on the engine's database, or None where one cannot share it (in-memory SQLite,
    which is private to each connection). Without `unmatched`, it declines every new alert."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    if engine.dialect.name == "sqlite":
        database = args[0] if args else ""
        if not database or database == ":memory:" or "mode=memory" in str(database):
            return None
        return _SqliteLane((list(args), {**kwargs, "timeout": SQLITE_BUSY_SECONDS}),
                           unmatched=unmatched)
    if engine.dialect.name == "postgresql":
        return _PostgresLane({**kwargs, **PG_CONNECT_ARGS}, unmatched=unmatched)
    return None
