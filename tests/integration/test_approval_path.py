"""The one approval path: a decision locks the execution row once, whatever the channel.

Counted on PostgreSQL, where a row lock is a `SELECT … FOR UPDATE` statement (SQLite has no
row locks, so there is nothing to count there).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.support.engine_catalog import risky, runbook
from tests.support.engine_helpers import rig
from tests.support.procs import RUNBOOKD

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


async def test_a_later_decision_replaces_an_earlier_one_and_a_reject_vetoes(make_rig):
    """Hole 5: approve, then reject, by the same approver was a 500 (a unique constraint) on
    every channel. The later decision replaces the earlier; a reject is a veto; both stay."""
    book = runbook("quorum", [risky("change", count=2)])
    async with make_rig([book]) as r:
        await r.fire("quorum")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        answer = await r.post(f"/api/v1/executions/{ex.id}/steps/change/reject", "alice",
                              {"comment": "on second thought, no"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["step_status"] == "rejected"
        await r.wait_status(ex.id, "rejected")
        approvals = sorted(await r.approvals(), key=lambda a: a.id)
        events = [e.kind for e in await r.events() if e.kind.startswith("approval")]
    assert [(a.identity, a.decision, a.voided_at is not None) for a in approvals] == [
        ("alice", "approve", True), ("alice", "reject", False)]
    assert "replaced" in approvals[0].void_reason
    assert events == ["approval.approve", "approval.reject"]


async def test_an_api_decision_on_an_old_plan_is_a_409_with_the_current_plan(make_rig):
    """Hole 4: the API takes the plan hash the approver reviewed; a mismatch is refused and
    shows the plan as it is now, so nothing is approved that was not seen."""
    book = runbook("quorum", [risky("change")])
    async with make_rig([book]) as r:
        await r.fire("quorum")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        [step] = await r.steps(ex.id)
        old = await r.post(f"/api/v1/executions/{ex.id}/steps/change/approve", "alice",
                           {"plan_hash": "ab" * 32})
        assert old.status_code == 409, old.text
        error = old.json()["error"]
        assert error["details"]["plan_hash"] == step.step_hash
        assert error["details"]["plan"]["summary"] == step.plan["summary"]
        assert await r.approvals() == []
        good = await r.post(f"/api/v1/executions/{ex.id}/steps/change/approve", "alice",
                            {"plan_hash": step.step_hash})
        assert good.status_code == 200, good.text
        await r.wait_status(ex.id, "succeeded")


async def _cli(db_url, tokens_file, *args):
    proc = await asyncio.create_subprocess_exec(
        str(RUNBOOKD), *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url,
             "RUNBOOKD_API_TOKENS_FILE": str(tokens_file)})
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_the_cli_shows_the_plan_and_approves_only_the_plan_seen(make_rig, db_url, tokens,
                                                                     tokens_file):
    """Hole 4 from a terminal: `show` prints the plan and its hash; `approve` binds to the plan
    it printed (or to --plan-hash), and refuses an old one with the plan as it is now."""
    book = runbook("quorum", [risky("change")])
    async with make_rig([book]) as r:
        await r.fire("quorum")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        [step] = await r.steps(ex.id)
        code, shown, _ = await _cli(db_url, tokens_file, "show", str(ex.id))
        assert code == 0 and f"plan: {step.plan['summary']}" in shown
        assert step.step_hash in shown
        base = ("approve", str(ex.id), "change", "--token", tokens["alice"])
        code, out, err = await _cli(db_url, tokens_file, *base, "--plan-hash", "ab" * 32)
        assert code == 1 and "409" in err and "the plan is now" in err, err
        code, out, err = await _cli(db_url, tokens_file, *base)  # no terminal, no --yes
        assert code == 2 and "--plan-hash" in err, err
        assert await r.approvals() == []
        code, out, err = await _cli(db_url, tokens_file, *base, "--plan-hash", step.step_hash)
        assert code == 0, err
        assert json.loads(out.splitlines()[-1])["step_status"] == "approved"
        await r.wait_status(ex.id, "succeeded")
        [approval] = await r.approvals()
    assert (approval.identity, approval.channel, approval.step_hash) == (
        "alice", "cli", step.step_hash)
