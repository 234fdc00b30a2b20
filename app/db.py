"""Database engine, session factory, column types and transaction scopes.

SQLite runs in WAL mode with `synchronous=FULL`, because an acknowledged alert must survive a
power loss, and with a one-connection pool, because SQLite has one writer anyway and a queue
in asyncio is cheaper than busy-waiting on its lock. PostgreSQL gets a fixed pool, no overflow.
The ingest writer's redelivery lane keeps one more connection outside the pool, on SQLite in a
thread of its own (app/intake/redelivery.py); its one-statement writes wait for the lock there,
never on the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    event,
    func,
    insert,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

from app.errors import Unavailable, is_database_unavailable

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# An auto-incrementing 64-bit key; SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# JSON documents; JSONB on PostgreSQL so that label filters can use containment.
Json = JSON().with_variant(JSONB(), "postgresql")


def dialect_insert(session: AsyncSession) -> Any:
    """The INSERT construct of the session's database, for ON CONFLICT DO NOTHING: each
    dialect has its own."""
    bind = session.bind
    return postgresql.insert if bind is not None and bind.dialect.name == "postgresql" \
        else sqlite.insert


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite keeps no zone, so without this a value written aware would come back naive.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


SQLITE_BUSY_SECONDS = 30  # how long a writer waits for another process's write lock
PG_CONNECT_ARGS = {"timeout": 3, "command_timeout": 30}  # connect, then each statement


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine tuned for the dialect: see the module docstring for why."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=60,
            connect_args={"timeout": SQLITE_BUSY_SECONDS},
            # Every user of a connection ends its own transaction (session_scope commits or
            # rolls back), so the pool's extra ROLLBACK on return would only cost a hop.
            pool_reset_on_return=None,
        )
        event.listen(engine.sync_engine, "connect", lambda conn, _record: sqlite_pragmas(conn))
        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=10,
        connect_args=PG_CONNECT_ARGS,
    )


def sqlite_pragmas(dbapi_conn: Any) -> None:
    """Durable commits (WAL, fsync on each), foreign keys, and a wait for the write lock."""
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.close()


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


@contextlib.asynccontextmanager
async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction for a worker: commit on success, roll back on error.

    A lost database becomes `Unavailable`, so every caller handles outages the same way.
    """
    try:
        async with factory() as session, session.begin():
            yield session
    except Unavailable:
        raise
    except Exception as exc:
        if is_database_unavailable(exc):
            raise Unavailable() from exc
        raise


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Request dependency: the route's transaction, committed when the route returns."""
    async with session_scope(request.app.state.session_factory) as session:
        yield session


# The route's transaction; `scope="function"` commits before the answer is sent, so a failed
# commit can never follow a 2xx.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def json_key_equals(column: Any, key: str, value: str, *, dialect: str) -> ColumnElement[bool]:
    """`column[key] == value` for a JSON object column, indexed on each dialect's own terms.

    `key` must be a label name (checked by the caller), so it is safe inside a JSON path.
    """
    if dialect == "postgresql":
        # Containment (@>) can use a GIN index on the JSONB column.
        return type_coerce(column, JSONB()).contains({key: value})
    return func.json_extract(column, f'$."{key}"') == value


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's current transaction commits (never on rollback).

    For effects outside the database that must not run for a change that did not land:
    waking a worker, counting a metric.
    """
    session.sync_session.info.setdefault("after_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop("after_commit", []):
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)


async def insert_returning_ids(session: AsyncSession, table: Any,
                               rows: list[dict[str, Any]]) -> list[int]:
    """Insert many rows and return their ids, in the order of `rows`, in few round trips.

    PostgreSQL returns them from one multi-row INSERT ... RETURNING. On SQLite a RETURNING
    that must keep order degrades to one statement per row, so the rows go in one
    executemany and the ids are read back: SQLite has one writer and this transaction holds
    it, so the new rowids are consecutive, ending at last_insert_rowid().
    """
    if not rows:
        return []
    conn = await session.connection()  # Core, without the ORM's per-statement work
    if conn.dialect.name == "sqlite":
        await conn.execute(insert(table), rows)
        last = (await conn.exec_driver_sql("SELECT last_insert_rowid()")).scalar_one()
        return list(range(last - len(rows) + 1, last + 1))
    result = await conn.execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return list(result.scalars().all())
