"""The executor's cost per step (issue 17, target 4): a run of safe steps commits once per
step, the transaction that records a step also starting the next, and gives its lease up in
its last transaction; intake goes first while the executor runs in the same process."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import make_engine, make_session_factory
from app.intake.service import AlertChange, record_no_match
from app.intake.writer import GroupCommitWriter
from tests.support.auth import WEBHOOK_HEADERS
from tests.support.engine_catalog import runbook, step
from tests.support.intake import quiet_envelope
from tests.support.payloads import am_alert, am_body, go_json


def _executor_task() -> str | None:
    """The executor's task running now: a driver, or the round its decisions share."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not in the loop's thread
        return None
    name = task.get_name() if task is not None else ""
    return name if name.startswith(("drive-", "executor-rounds")) else None


@contextlib.contextmanager
def _counting_executor_commits() -> Iterator[collections.Counter[str]]:
    commits: collections.Counter[str] = collections.Counter()

    def count(_conn: object) -> None:
        task = _executor_task()
        if task is not None:
            commits[task] += 1

    event.listen(Engine, "commit", count)
    try:
        yield commits
    finally:
        event.remove(Engine, "commit", count)


async def test_safe_steps_commit_once_each_and_keep_every_event(make_rig):
    with _counting_executor_commits() as commits:
        async with make_rig([runbook("three", [step("a"), step("b"), step("c")])]) as r:
            await r.fire("three", model="m1")
            done = await r.wait_for(lambda rows: len(rows) == 1
                                    and rows[0].status == "succeeded", timeout=30)
            steps = await r.steps()
            events = await r.events()
    execution = done[0]
    # One to start the execution and its first step, one per step that records it and
    # starts the next (the last one ends the execution and frees the lease): no commit to
    # read the drill flag, to lock again after a step, or to release the lease.
    assert sum(commits.values()) == 4, commits
    assert execution.lease_owner is None and execution.lease_expires_at is None
    assert [s.status for s in sorted(steps, key=lambda s: s.position)] == ["succeeded"] * 3
    # Each step still committed `running` before its action ran, and every change has its
    # event: pending -> running -> succeeded for each step, in order.
    moves = [(e.step_id, e.from_state, e.to_state) for e in events if e.kind == "step.state"]
    assert moves == [(s, a, b) for s in "abc"
                     for a, b in (("pending", "running"), ("running", "succeeded"))]
    states = [(e.from_state, e.to_state) for e in events if e.kind == "execution.state"]
    assert states == [("pending", "running"), ("running", "succeeded")]


async def test_executions_ready_at_once_share_their_transactions(make_rig):
    """Twelve executions started by one webhook: their decisions share rounds, so the
    executor commits far fewer than the 4 transactions each would take alone, and every
    execution still records each step's pending -> running -> succeeded."""
    alerts = [am_alert(f"{n:016x}", labels={"alertname": "three", "model": f"m{n}"})
              for n in range(12)]
    with _counting_executor_commits() as commits:
        async with make_rig([runbook("three", [step("a"), step("b"), step("c")])],
                            worker_concurrency=12) as r:
            response = await r.http.post("/webhooks/alertmanager",
                                         content=go_json(am_body(*alerts)),
                                         headers=WEBHOOK_HEADERS)
            assert response.status_code == 200, response.text
            done = await r.wait_for(lambda rows: len(rows) == 12 and all(
                e.status == "succeeded" for e in rows), timeout=60)
            events = await r.events()
    # Alone: 48. Shared: about 4 rounds, whatever the number of executions.
    assert sum(commits.values()) <= 12, commits
    for execution in done:
        assert execution.lease_owner is None
        moves = [(e.step_id, e.from_state, e.to_state) for e in events
                 if e.kind == "step.state" and e.execution_id == execution.id]
        assert moves == [(s, a, b) for s in "abc"
                         for a, b in (("pending", "running"), ("running", "succeeded"))]


async def test_the_executor_waits_while_the_intake_stores_a_delivery(db_url):
    """`until_idle`, which the executor awaits before each transaction: at once when nothing
    is queued, until the delivery being stored has committed, and never longer than asked."""
    engine = make_engine(db_url)
    release = asyncio.Event()

    async def slow_hook(session: AsyncSession, changes: list[AlertChange]) -> None:
        await release.wait()
        await record_no_match(session, changes)

    writer = GroupCommitWriter(make_session_factory(engine), hook=lambda: slow_hook, lane=None)
    await writer.start()
    try:
        await asyncio.wait_for(writer.until_idle(5.0), 0.5)  # idle: no wait at all
        stored = writer.submit(quiet_envelope("one"))
        waiter = asyncio.create_task(writer.until_idle(30.0))
        await asyncio.sleep(0.2)
        assert not waiter.done()  # the delivery is being stored: the executor waits
        release.set()
        result = await stored
        await asyncio.wait_for(waiter, 5.0)  # and goes on once it has committed
        assert result.new == 1

        release.clear()
        held = writer.submit(quiet_envelope("two"))
        started = asyncio.get_running_loop().time()
        await writer.until_idle(0.3)  # intake stays busy: the wait is bounded
        assert 0.25 <= asyncio.get_running_loop().time() - started < 5.0
        assert not held.done()
        release.set()
        await held
    finally:
        release.set()
        await writer.stop()
        await engine.dispose()
