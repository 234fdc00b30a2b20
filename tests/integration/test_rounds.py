"""Decisions that share a transaction (issue 17, target 4), and what sharing must not change:
each decision's writes and events commit together or not at all, a decision that fails
fails alone, and what a transaction wrote is what it reads (events, guards)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import make_engine, make_session_factory, session_scope, utcnow
from app.engine.guards import current_guard_state, runbook_key, set_guard
from app.engine.models import Execution, StepRun
from app.engine.rounds import Rounds
from app.engine.transitions import add_step_run
from app.engine.worker import Worker
from app.errors import NotFound
from app.events import Event, record_event


@pytest.fixture
async def factory(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url)
    try:
        yield make_session_factory(engine)
    finally:
        await engine.dispose()


async def _executions(factory: async_sessionmaker[AsyncSession], count: int) -> list[int]:
    now = utcnow()
    async with session_scope(factory) as session:
        rows = [Execution(runbook_id="rb", runbook_version="v", target=f"model:{n}",
                          status="pending", params={}, dry_run=False, trigger="alert",
                          created_at=now, updated_at=now) for n in range(count)]
        session.add_all(rows)
    return [row.id for row in rows]


async def _events(factory: async_sessionmaker[AsyncSession]) -> list[Event]:
    async with session_scope(factory) as session:
        return list((await session.execute(select(Event).order_by(Event.id))).scalars())


def _note(kind: str):
    async def decide(session: AsyncSession, execution: Execution) -> int:
        record_event(session, kind=kind, entity="execution", actor="test",
                     execution_id=execution.id)
        return execution.id
    return decide


async def test_decisions_queued_at_once_share_one_commit(factory):
    ids = await _executions(factory, 5)
    commits = collections.Counter[str]()
    listener = lambda _conn: commits.update(["commit"])  # noqa: E731
    event.listen(Engine, "commit", listener)
    try:
        rounds = Rounds(factory)
        results = await asyncio.gather(*(rounds.run(i, _note("decided")) for i in ids))
    finally:
        event.remove(Engine, "commit", listener)
    assert results == ids
    assert commits["commit"] == 1
    assert sorted(e.execution_id for e in await _events(factory)) == ids


async def test_a_decision_that_fails_fails_alone(factory):
    ids = await _executions(factory, 3)

    async def broken(session: AsyncSession, execution: Execution) -> int:
        record_event(session, kind="half-done", entity="execution", actor="test",
                     execution_id=execution.id)
        raise ValueError("this decision is broken")

    rounds = Rounds(factory)
    results = await asyncio.gather(
        rounds.run(ids[0], _note("decided")), rounds.run(ids[1], broken),
        rounds.run(ids[2], _note("decided")), rounds.run(10**9, _note("decided")),
        return_exceptions=True)
    assert results[0] == ids[0] and results[2] == ids[2]
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], NotFound)
    # The others' events committed; the failed decision's went with it.
    assert [(e.kind, e.execution_id) for e in await _events(factory)] == [
        ("decided", ids[0]), ("decided", ids[2])]


async def test_a_cancelled_waiter_is_not_decided(factory):
    ids = await _executions(factory, 2)
    rounds = Rounds(factory)
    kept = asyncio.ensure_future(rounds.run(ids[0], _note("decided")))
    dropped = asyncio.ensure_future(rounds.run(ids[1], _note("decided")))
    dropped.cancel()  # before the round starts: its driver is gone
    assert await kept == ids[0]
    await rounds.close()
    assert dropped.cancelled()
    assert [e.execution_id for e in await _events(factory)] == [ids[0]]


async def test_a_worker_stop_cut_short_still_ends_the_round_in_progress(factory):
    """The round is a task of its own: a shutdown cut short must not leave it holding its
    transaction open (the next test's TRUNCATE waited on one for ever, frozen in the shared
    event loop)."""
    [execution_id] = await _executions(factory, 1)
    rounds = Rounds(factory)
    deciding = asyncio.Event()

    async def slow(session: AsyncSession, execution: Execution) -> int:
        deciding.set()
        await asyncio.sleep(0.5)
        record_event(session, kind="decided", entity="execution", actor="test",
                     execution_id=execution.id)
        return execution.id

    worker = Worker(SimpleNamespace(me="test-worker", rounds=rounds),  # type: ignore[arg-type]
                    session_factory=factory, concurrency=1, lease_seconds=30, poll_seconds=1,
                    single_process=True)
    worker._drivers[execution_id] = asyncio.create_task(rounds.run(execution_id, slow))
    await asyncio.wait_for(deciding.wait(), 10)
    stopping = asyncio.create_task(worker.stop(grace=3600))
    await asyncio.sleep(0.1)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert rounds._pump is not None and rounds._pump.done()
    assert [e.kind for e in await _events(factory)] == ["decided"]


async def test_events_are_read_back_in_their_transaction_and_keep_their_order(factory):
    [execution_id] = await _executions(factory, 1)
    async with session_scope(factory) as session:
        for n in range(3):
            record_event(session, kind=f"k{n}", entity="execution", actor="test",
                         execution_id=execution_id)
        # Read back before the commit, by an ORM query and by an aggregate.
        seen = [e.kind for e in (await session.execute(
            select(Event).where(Event.execution_id == execution_id).order_by(Event.id)
        )).scalars()]
        newest = (await session.execute(select(func.max(Event.id)))).scalar_one()
        record_event(session, kind="k3", entity="execution", actor="test",
                     execution_id=execution_id)
    assert seen == ["k0", "k1", "k2"]
    events = await _events(factory)
    assert [e.kind for e in events] == ["k0", "k1", "k2", "k3"]
    assert events[2].id == newest


async def test_events_of_a_rolled_back_transaction_are_gone(factory):
    [execution_id] = await _executions(factory, 1)
    with pytest.raises(RuntimeError):
        async with session_scope(factory) as session:
            record_event(session, kind="lost", entity="execution", actor="test",
                         execution_id=execution_id)
            raise RuntimeError("the change failed")
    async with session_scope(factory) as session:
        async with session.begin_nested() as savepoint:
            record_event(session, kind="undone", entity="execution", actor="test",
                         execution_id=execution_id)
            await savepoint.rollback()
        record_event(session, kind="kept", entity="execution", actor="test",
                     execution_id=execution_id)
    assert [e.kind for e in await _events(factory)] == ["kept"]


async def test_a_guard_set_in_the_transaction_is_seen_by_its_later_decisions(factory):
    async with session_scope(factory) as session:
        assert (await current_guard_state(session)).holds("rb") is None
        await set_guard(session, runbook_key("rb"), engaged=True, actor="test",
                        reason="breaker")
        assert (await current_guard_state(session)).holds("rb") == "runbook paused: breaker"


def _run(execution_id: int, step_id: str) -> StepRun:
    return StepRun(execution_id=execution_id, step_id=step_id, kind="step", position=0,
                   title=step_id, action="noop", status="pending", created_at=utcnow())


async def test_the_step_runs_a_round_adds_go_in_as_one_insert(factory, db_url):
    """Their ids are taken up front (one statement), so no decision flushes to learn one."""
    ids = await _executions(factory, 5)
    inserts = collections.Counter[str]()

    def count(_conn, _cursor, statement, *_args) -> None:
        if statement.startswith("INSERT INTO step_runs"):
            inserts.update(["insert"])

    async def add_one(session: AsyncSession, execution: Execution) -> int:
        run = await add_step_run(session, _run(execution.id, "first"))
        return run.id

    engine = factory.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        rounds = Rounds(factory)
        taken = await asyncio.gather(*(rounds.run(i, add_one) for i in ids))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert inserts["insert"] == 1
    async with session_scope(factory) as session:
        stored = (await session.execute(select(StepRun.execution_id, StepRun.id)
                                        .order_by(StepRun.execution_id))).all()
    assert stored == list(zip(ids, taken, strict=True))


async def test_a_step_run_added_without_a_taken_id_gets_one_of_its_own(factory):
    """A run added the plain way (its id left to the INSERT) between two with taken ids: all
    three go in, none on another's id."""
    [execution_id] = await _executions(factory, 1)
    async with session_scope(factory) as session:
        first = await add_step_run(session, _run(execution_id, "a"))
        plain = _run(execution_id, "b")
        session.add(plain)
        last = await add_step_run(session, _run(execution_id, "c"))
    assert len({first.id, plain.id, last.id}) == 3
    async with session_scope(factory) as session:
        assert (await session.execute(select(func.count()).select_from(StepRun))).scalar() == 3
