"""Only a lost or unreachable database is an outage (503, retried by senders). Any other
database error is a bug: a 500 with an error id, its traceback logged under that id."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from app.errors import install_error_handlers, is_database_unavailable


class _AsyncpgInterfaceError(Exception):
    """asyncpg's client-side refusal, e.g. more than 32,767 bind parameters."""


class ConnectionDoesNotExistError(Exception):
    """Named as asyncpg names a connection that went away."""


def _wrap(kind, orig, *, invalidated=False):
    return kind("SELECT 1", {}, orig, connection_invalidated=invalidated)


OUTAGES = [
    ConnectionRefusedError("connection refused"),
    TimeoutError(),
    _wrap(OperationalError, sqlite3.OperationalError("database is locked")),
    _wrap(OperationalError, sqlite3.OperationalError("unable to open database file")),
    _wrap(InterfaceError, ConnectionDoesNotExistError("connection was closed in the middle")),
    _wrap(DBAPIError, Exception("anything"), invalidated=True),
]
BUGS = [
    _wrap(InterfaceError, _AsyncpgInterfaceError(
        "the number of query arguments cannot exceed 32767")),
    _wrap(OperationalError, sqlite3.OperationalError("no such table: executions")),
    _wrap(OperationalError, sqlite3.OperationalError("near \"SELEC\": syntax error")),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
def test_an_unreachable_database_is_an_outage(exc):
    assert is_database_unavailable(exc)


@pytest.mark.parametrize("exc", BUGS, ids=lambda e: str(getattr(e, "orig", e))[:30])
def test_a_query_bug_is_not_an_outage(exc):
    assert not is_database_unavailable(exc)


def test_a_query_bug_is_a_500_with_an_error_id_and_its_traceback_logged(caplog):
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise BUGS[0]

    with caplog.at_level(logging.ERROR), TestClient(app, raise_server_exceptions=False) as http:
        answer = http.get("/boom")
    assert answer.status_code == 500
    body = answer.json()["error"]
    assert body["code"] == "internal" and body["error_id"]
    [record] = [r for r in caplog.records if body["error_id"] in r.getMessage()]
    assert record.exc_info is not None  # the traceback, under that id
    assert "Retry-After" not in answer.headers
