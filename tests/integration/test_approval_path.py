"""The one approval path: a decision locks the execution row once, whatever the channel.

Counted on PostgreSQL, where a row lock is a `SELECT … FOR UPDATE` statement (SQLite has no
row locks, so there is nothing to count there).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.support.engine_catalog import risky, runbook
from tests.support.engine_helpers import rig

LOCK = re.compile(r"\bFOR UPDATE\b(?!\s+SKIP LOCKED)")


@contextmanager
def row_locks() -> Iterator[list[str]]:
    """Every `FOR UPDATE` (not SKIP LOCKED: the worker's claims) sent by this process."""
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        if LOCK.search(statement):
            table = re.search(r"\bFROM (\w+)", statement)
            seen.append(table.group(1) if table else statement)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)


async def test_a_decision_locks_the_execution_row_once(tmp_path, make_settings, tokens,
                                                       db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks are counted on PostgreSQL; SQLite has none")
    book = runbook("quorum", [risky("change", count=2)])
    async with rig(tmp_path, make_settings, tokens, db_url, [book]) as r:
        await r.fire("quorum")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        with row_locks() as approve_locks:
            answer = await r.approve(ex.id, "change", "alice")
        assert answer.status_code == 200, answer.text
        with row_locks() as reject_locks:
            answer = await r.post(f"/api/v1/executions/{ex.id}/steps/change/reject", "bob",
                                  {"comment": "no"})
        assert answer.status_code == 200, answer.text
    assert approve_locks.count("executions") == 1, approve_locks
    assert approve_locks.count("step_runs") == 1, approve_locks
    assert reject_locks.count("executions") == 1, reject_locks
